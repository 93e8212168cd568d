"""The benchmark's picture: customers committed per second against the database limit, and the latency CDF.

matplotlib is a development extra (``pip install -e .[bench]`` or requirements-dev.txt),
never a runtime dependency of the service: imported here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SERIES_LABELS = {
    "commit": "timestamp → committed",
    "published": "→ on customer.events",
    "read_model": "→ visible in MongoDB",
}


def draw(
    path: Path,
    timelines: Sequence[Sequence[int]],
    database_limit: float,
    latencies_ms: dict[str, list[float]],
    title: str,
) -> None:
    """Write the PNG: one line per pipeline run, the limit as a dashed line; one CDF per latency series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, cdf) = plt.subplots(1, 2, figsize=(13, 4.8))
    for run, timeline in enumerate(timelines, start=1):
        throughput.plot(range(len(timeline)), timeline, drawstyle="steps-post", label=f"pipeline run {run}")
    throughput.axhline(database_limit, color="black", linestyle="--", label=f"database limit {database_limit:,.0f}/s")
    throughput.set_xlabel("seconds since the first event was sent")
    throughput.set_ylabel("customers committed per second")
    throughput.set_ylim(bottom=0)
    throughput.legend(loc="upper right", fontsize="small")
    throughput.grid(alpha=0.3)
    for name, values in latencies_ms.items():
        ranked = sorted(values)
        if not ranked:
            continue
        cdf.plot(ranked, [(index + 1) / len(ranked) for index in range(len(ranked))], label=SERIES_LABELS[name])
    cdf.set_xscale("log")
    cdf.set_xlabel("latency from the event's timestamp (ms, log scale)")
    cdf.set_ylabel("share of events")
    cdf.set_ylim(0, 1.0)
    cdf.legend(loc="lower right", fontsize="small")
    cdf.grid(alpha=0.3, which="both")
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
