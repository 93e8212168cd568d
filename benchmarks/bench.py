"""``acme-customer bench``: the pipeline against the limits of the stores it runs on, measured in one run.

Runs against the stack the environment names (``.devstack/env`` for the local one), prints
one table and writes ``bench/results/<timestamp>.json`` and ``.png``. What each figure is:
docs/performance.md. Every figure is measured ``--runs`` times; the table and the JSON give
the medians, the JSON each run too, and the load average beside them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from acme_customer.adapters.topics import ensure_topics
from acme_customer.config import Settings
from benchmarks import latency, limits, pipeline, profiling, workload

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "bench" / "results"
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    events: int = 20_000
    runs: int = 3
    batch_size: int = Settings.batch_size
    per_event_events: int = 2_000
    latency_seconds: float = 60.0
    offered_rate: float = 500.0
    latency_workers: int = 1
    pgbench_seconds: float = 10.0
    results_dir: Path = DEFAULT_RESULTS
    profile_dir: Path | None = None  # py-spy flame graphs of the first batched and per-event runs
    figure: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> Options:
        """The test suite's size: every part once, small."""
        values: dict[str, Any] = {
            "events": 2_000,
            "runs": 1,
            "per_event_events": 200,
            "latency_seconds": 5.0,
            "pgbench_seconds": 2.0,
        }
        return cls(**{**values, **overrides})


def _log(message: str) -> None:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"[{datetime.now():%H:%M:%S}] (load {load}) {message}", file=sys.stderr, flush=True)


def _repeat(runs: int, what: str, measure: Callable[[int], T], show: Callable[[T], str]) -> list[T]:
    results = []
    for run in range(runs):
        result = measure(run)
        _log(f"{what} {run + 1}/{runs}: {show(result)}")
        results.append(result)
    return results


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "hostname": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
    }


def run(options: Options) -> dict[str, Any]:
    """Measure everything, write the JSON (and the PNG), print the table; return the results."""
    started = datetime.now(UTC)
    results: dict[str, Any] = {"started": started.isoformat(), "machine": machine(), "settings": _settings(options)}
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    registry = os.environ["SCHEMA_REGISTRY_URL"]
    burst = workload.burst(options.events, registry)
    documents: list[dict[str, Any]] = []

    def keep_documents(bench: pipeline.BenchWorker) -> None:
        if not documents:
            documents.extend(limits.registered_documents(bench.stack.database_url))

    def profiler(name: str) -> Callable[[pipeline.BenchWorker], Callable[[], None]] | None:
        if options.profile_dir is None:
            return None
        return lambda bench: profiling.record(bench.pid, options.profile_dir / f"{name}.svg")  # type: ignore[operator]

    batched = _repeat(
        options.runs,
        f"pipeline, BATCH_SIZE {options.batch_size}, {options.events} events",
        lambda n: pipeline.run_burst(
            burst, options.batch_size, while_loaded=profiler("batched") if n == 0 else None, keep=keep_documents
        ),
        lambda r: f"{r.events_per_s:,.0f} events/s, {r.projected_per_s:,.0f} projected/s",
    )
    database = _repeat(
        options.runs,
        "database limit",
        lambda _: limits.database_limit(burst.events, options.batch_size),
        lambda r: f"{r:,.0f} events/s",
    )
    pgbench = _repeat(
        options.runs, "pgbench", lambda _: limits.pgbench_tps(options.pgbench_seconds), lambda r: f"{r:,.0f} tps"
    )
    per_event_burst = workload.burst(options.per_event_events, registry)
    per_event = _repeat(
        options.runs,
        f"pipeline, BATCH_SIZE 1, {options.per_event_events} events",
        lambda n: pipeline.run_burst(per_event_burst, 1, while_loaded=profiler("per-event") if n == 0 else None),
        lambda r: f"{r.events_per_s:,.0f} events/s",
    )
    projection_batch = Settings.projection_batch_size
    read_model = _repeat(
        options.runs,
        f"read model limit, {len(documents)} documents",
        lambda _: limits.read_model_limit(documents, projection_batch),
        lambda r: f"{r:,.0f} documents/s",
    )
    offered = _repeat(
        options.runs,
        f"latency at {options.offered_rate:g} events/s for {options.latency_seconds:g} s, "
        f"{options.latency_workers} worker(s)",
        lambda _: latency.run_offered_load(
            options.offered_rate, options.latency_seconds, workers=options.latency_workers
        ),
        lambda r: ", ".join(f"{name} p99 {values['p99']:.0f} ms" for name, values in r.percentiles().items()),
    )

    median = statistics.median
    events_per_s = median(r.events_per_s for r in batched)
    projected_per_s = median(r.projected_per_s for r in batched)
    drains = [rate for r in batched if (rate := r.drain_per_s) is not None]
    drain_per_s = median(drains) if drains else None
    results["pipeline"] = {
        "events_per_s": events_per_s,
        "projected_per_s": projected_per_s,
        "projection_drain_per_s": drain_per_s,
        "cpu_s_per_1000": median(r.cpu_s_per_1000 for r in batched),
        "rss_peak_mb": median(r.rss_peak_mb for r in batched),
        "runs": [_run_record(r) for r in batched],
    }
    results["database_limit"] = {
        "events_per_s": median(database),
        "ratio": events_per_s / median(database),
        "batch_size": options.batch_size,
        "runs": database,
    }
    results["pgbench"] = {"tps": median(pgbench), "seconds": options.pgbench_seconds, "runs": pgbench}
    per_event_rate = median(r.events_per_s for r in per_event)
    results["per_event"] = {
        "events_per_s": per_event_rate,
        "ratio_to_pgbench": per_event_rate / median(pgbench),
        "projected_per_s": median(r.projected_per_s for r in per_event),
        "runs": [_run_record(r) for r in per_event],
    }
    results["read_model_limit"] = {
        "docs_per_s": median(read_model),
        "ratio": projected_per_s / median(read_model),
        "drain_ratio": drain_per_s / median(read_model) if drain_per_s is not None else None,
        "batch_size": projection_batch,
        "runs": read_model,
    }
    results["latency_ms"] = {
        "offered_rate": options.offered_rate,
        "workers": options.latency_workers,
        "seconds": options.latency_seconds,
        **{
            series: {p: median(r.percentiles()[series][p] for r in offered) for p in ("p50", "p95", "p99", "max")}
            for series in latency.SERIES
        },
        "runs": [
            {
                "sent": r.sent,
                "achieved_rate": r.achieved_rate,
                "load_average": list(r.load_average),
                **r.percentiles(),
            }
            for r in offered
        ],
    }
    results["accounting"] = [problem for r in (*batched, *per_event) for problem in r.accounting_problems()]
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    stem = started.strftime("%Y%m%dT%H%M%SZ")
    options.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = options.results_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    results["files"] = [str(json_path)]
    if options.figure:
        from benchmarks import figures

        pooled: dict[str, list[float]] = {series: [] for series in latency.SERIES}
        for r in offered:
            for series, values in r.latencies_ms.items():
                pooled[series].extend(values)
        png_path = options.results_dir / f"{stem}.png"
        figures.draw(
            png_path,
            [r.committed_per_second for r in batched],
            median(database),
            pooled,
            f"acme-customer bench {started:%Y-%m-%d %H:%M} UTC: {options.events:,} events, BATCH_SIZE "
            f"{options.batch_size}, {options.runs} run(s); latency at {options.offered_rate:g}/s; "
            f"load {results['machine']['load_average_start'][0]:.2f}→{results['machine']['load_average_end'][0]:.2f} "
            f"on {results['machine']['cores']} cores",
        )
        results["files"].append(str(png_path))
    print(table(results))
    return results


def _settings(options: Options) -> dict[str, Any]:
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()}
    settings["argv"] = sys.argv
    return settings


def _run_record(run: pipeline.PipelineRun) -> dict[str, Any]:
    return {
        "events": run.events,
        "unique": run.unique,
        "events_per_s": run.events_per_s,
        "projected_per_s": run.projected_per_s,
        "projection_drain_per_s": run.drain_per_s,
        "projection_drain": {"documents": run.drain[0], "seconds": run.drain[1]},
        "committed_s": run.committed_s,
        "projected_s": run.projected_s,
        "cpu_s_per_1000": run.cpu_s_per_1000,
        "rss_peak_mb": run.rss_peak_mb,
        "counts": run.counts,
        "committed_per_second": run.committed_per_second,
        "load_average": list(run.load_average),
    }


def _runs(values: Sequence[float]) -> str:
    return " / ".join(f"{value:,.0f}" for value in values)


def table(results: dict[str, Any]) -> str:
    """The one table: medians, the runs they come from, the ratios."""
    p, d, g = results["pipeline"], results["database_limit"], results["pgbench"]
    e, m, lat = results["per_event"], results["read_model_limit"], results["latency_ms"]
    host = results["machine"]
    rows = [
        ("pipeline events/s", f"{p['events_per_s']:,.0f}", _runs([r["events_per_s"] for r in p["runs"]]), ""),
        ("pipeline projected/s", f"{p['projected_per_s']:,.0f}", _runs([r["projected_per_s"] for r in p["runs"]]), ""),
        ("worker CPU s / 1000 events", f"{p['cpu_s_per_1000']:.2f}", "", ""),
        ("worker peak RSS MiB", f"{p['rss_peak_mb']:.0f}", "", ""),
        (
            "database limit events/s",
            f"{d['events_per_s']:,.0f}",
            _runs(d["runs"]),
            f"pipeline ÷ limit {d['ratio']:.2f}",
        ),
        ("pgbench tps (1 client)", f"{g['tps']:,.0f}", _runs(g["runs"]), ""),
        (
            "per-event events/s",
            f"{e['events_per_s']:,.0f}",
            _runs([r["events_per_s"] for r in e["runs"]]),
            f"÷ pgbench {e['ratio_to_pgbench']:.2f}",
        ),
        ("read model limit docs/s", f"{m['docs_per_s']:,.0f}", _runs(m["runs"]), f"projected ÷ limit {m['ratio']:.2f}"),
    ]
    if p["projection_drain_per_s"] is not None:
        drains = [r["projection_drain_per_s"] for r in p["runs"] if r["projection_drain_per_s"] is not None]
        rows.append(
            (
                "projection drain docs/s",
                f"{p['projection_drain_per_s']:,.0f}",
                _runs(drains),
                f"drain ÷ limit {m['drain_ratio']:.2f}",
            )
        )
    for series in latency.SERIES:
        values = lat[series]
        rows.append(
            (
                f"latency {series} ms",
                f"p50 {values['p50']:.0f}",
                f"p95 {values['p95']:.0f}  p99 {values['p99']:.0f}  max {values['max']:.0f}",
                f"at {lat['offered_rate']:g}/s",
            )
        )
    width = max(len(row[0]) for row in rows)
    lines = [
        f"acme-customer bench: {host['cores']} cores ({host['cpu']}), load average "
        f"{' '.join(f'{v:.2f}' for v in host['load_average_start'])} at start, "
        f"{' '.join(f'{v:.2f}' for v in host['load_average_end'])} at the end; medians of "
        f"{results['settings']['runs']} run(s)",
        f"{'figure':{width}}  {'median':>10}  {'runs':30}  ratio",
    ]
    lines += [f"{name:{width}}  {median:>10}  {runs:30}  {ratio}" for name, median, runs, ratio in rows]
    if results["accounting"]:
        lines.append("ACCOUNTING PROBLEMS: " + "; ".join(results["accounting"]))
    lines += [f"written: {path}" for path in results.get("files", [])]
    return "\n".join(lines)


def main(options: Options) -> int:
    started = time.monotonic()
    results = run(options)
    _log(f"bench done in {time.monotonic() - started:.0f} s")
    return 1 if results["accounting"] else 0
