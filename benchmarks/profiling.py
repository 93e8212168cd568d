"""py-spy against the worker under load: a flame graph SVG, and where the samples went.

``py-spy record --pid`` on the worker process itself (not ``--subprocesses``), idle samples
left out (no ``--idle``), so percentages are of the time the worker's threads were running
Python or native code. The summary reads the SVG's own sample counts (``fg:x``/``fg:w``).
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

# where a sample's time goes: the innermost frame on its stack from one of these (first match wins)
AREAS = {
    "PostgreSQL driver (psycopg, psycopg_pool)": r"\(psycopg",
    "Kafka client (aiokafka, kafka codecs)": r"\(aiokafka/|\(cramjam|\(kafka/",
    "Faust and mode (streams, agents, sensors, commits)": r"\(faust/|\(mode/",
    "Avro (fastavro, schema registry client, httpx)": r"\(fastavro/|\(schema_registry/|\(httpx|\(httpcore",
    "MongoDB driver (pymongo, bson)": r"\(pymongo/|\(bson/",
    "logging": r"\(logging/|\(acme_customer/logs\.py",
    "OpenTelemetry": r"\(opentelemetry/",
    "Prometheus client": r"\(prometheus_client/",
    "acme_customer (domain, use cases, stream edge, adapters)": r"\(acme_customer/",
    "uuid, json, datetime, other standard library": (
        r"\((uuid|json/|datetime|_strptime|re/|enum|dataclasses|copy|functools|typing)"
    ),
    "asyncio: event loop, epoll wait, transports": r"\((asyncio/|selectors\.py)",
    # blocked in queue.get, which py-spy does not see as idle
    "thread pool threads, waiting": r"\(concurrent/futures/thread\.py|\(threading\.py",
    # a sample whose stack holds no Python frame, only the flame graph's root
    "no Python frame (native code, garbage collection)": r"^all$",
}
OTHER = "other"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -r requirements-dev.txt (or the bench extra)")
    return found


def record(pid: int, svg: Path, rate: int = 100) -> Callable[[], None]:
    """Start recording ``pid`` into ``svg``; the returned call stops it (SIGINT) and waits for the file."""
    svg.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--nonblocking",
            "--format",
            "flamegraph",
            "-o",
            str(svg),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def stop() -> None:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=120)
        if not svg.exists():
            raise RuntimeError(f"py-spy wrote no flame graph: {errors.decode(errors='replace')[-500:]}")

    return stop


@dataclass(frozen=True)
class Frame:
    name: str
    depth: int
    start: int
    width: int


def frames(svg: Path) -> list[Frame]:
    """Every frame of an inferno flame graph, with its depth and sample span."""
    found = []
    namespace = "{http://www.w3.org/2000/svg}"
    for group in ElementTree.parse(svg).iter(f"{namespace}g"):
        title, rect = group.find(f"{namespace}title"), group.find(f"{namespace}rect")
        if title is None or rect is None or title.text is None:
            continue
        attributes = {key.split("}")[-1]: value for key, value in rect.attrib.items()}
        if "x" not in attributes or "w" not in attributes:
            continue
        name = re.sub(r" \([\d,]+ samples?, [\d.]+%\)$", "", title.text)
        found.append(Frame(name, round(float(rect.attrib["y"])), int(attributes["x"]), int(attributes["w"])))
    return found


@dataclass(frozen=True)
class Summary:
    samples: int
    self_top: list[tuple[str, float]]  # function -> % of samples spent in it (not below it)
    areas: list[tuple[str, float]]  # area -> % of samples whose innermost area frame is of it


def _parents(every: list[Frame]) -> tuple[dict[int, int | None], int]:
    """Each frame's parent (by index), and the total samples (the roots' width)."""
    by_depth: dict[int, list[int]] = {}
    for index, frame in enumerate(every):
        by_depth.setdefault(frame.depth, []).append(index)
    # the roots' row holds every sample: py-spy draws it at the top (children below), inferno's
    # classic layout at the bottom; either way a child sits in the next row away from the roots
    rows = sorted(by_depth)
    if sum(every[i].width for i in by_depth[rows[-1]]) > sum(every[i].width for i in by_depth[rows[0]]):
        rows.reverse()
    parent: dict[int, int | None] = {index: None for index in by_depth[rows[0]]}
    for upper, lower in itertools.pairwise(rows):
        for child in by_depth[lower]:
            start = every[child].start
            parent[child] = next(
                (i for i in by_depth[upper] if every[i].start <= start < every[i].start + every[i].width), None
            )
    return parent, sum(every[i].width for i in by_depth[rows[0]])


def summarize(svg: Path, top: int = 12) -> Summary:
    """Self time of the busiest functions, and self time gathered by area, as % of all samples."""
    every = frames(svg)
    if not every:
        return Summary(0, [], [])
    parent, total = _parents(every)
    children_width: Counter[int] = Counter()
    for child, up in parent.items():
        if up is not None:
            children_width[up] += every[child].width
    self_samples: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    for index, frame in enumerate(every):
        own = frame.width - children_width[index]
        if own <= 0:
            continue
        self_samples[_function(frame.name)] += own
        by_area[_area(every, parent, index)] += own
    self_top = [(name, 100 * count / total) for name, count in self_samples.most_common(top)]
    areas = [(area, 100 * by_area[area] / total) for area in [*AREAS, OTHER] if by_area[area]]
    return Summary(total, self_top, sorted(areas, key=lambda item: -item[1]))


def _area(every: list[Frame], parent: dict[int, int | None], index: int | None) -> str:
    """The area of the innermost frame, from ``index`` outwards, that belongs to one."""
    while index is not None:
        for area, pattern in AREAS.items():
            if re.search(pattern, every[index].name):
                return area
        index = parent[index]
    return OTHER


def callers(svg: Path, function: str, depth: int = 4) -> Counter[str]:
    """Samples of frames named like ``function``, by their ``depth`` nearest callers (to explain a row)."""
    every = frames(svg)
    parent, _ = _parents(every)
    found: Counter[str] = Counter()
    for index, frame in enumerate(every):
        if function in frame.name:
            chain: list[str] = []
            up = parent[index]
            while up is not None and len(chain) < depth:
                chain.append(_function(every[up].name))
                up = parent[up]
            found[" <- ".join(chain)] += frame.width
    return found


def _function(name: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: lines merged."""
    match = re.match(r"(.*) \((.*?):\d+\)$", name)
    if not match:
        return name
    return f"{match.group(1)} ({Path(match.group(2)).name})"


def main() -> None:
    """``python -m benchmarks.profiling FLAMEGRAPH.svg…``: the summary tables, as docs/performance.md shows them."""
    for path in sys.argv[1:]:
        summary = summarize(Path(path))
        print(f"\n{path}: {summary.samples} samples")
        print("| self time: function (module) | % of samples |\n| --- | ---: |")
        for name, share in summary.self_top:
            print(f"| `{name}` | {share:.1f} |")
        print("\n| area (innermost frame of it on the stack) | % of samples |\n| --- | ---: |")
        for area, share in summary.areas:
            print(f"| {area} | {share:.1f} |")


if __name__ == "__main__":
    main()
