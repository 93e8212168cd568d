"""``acme-customer bench --quick``: the benchmark's own accounting, never a speed.

Runs before the session worker starts (``test_00_`` sorts first, and this file asks for no
``worker``): the benchmark's workers join the contract's consumer group, ``customer-service``,
and a second member would take half the partitions and write into the session's databases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

pytestmark = pytest.mark.e2e

KEYS = {
    "pipeline": ("events_per_s", "projected_per_s", "cpu_s_per_1000", "rss_peak_mb"),
    "database_limit": ("events_per_s", "ratio"),
    "pgbench": ("tps",),
    "per_event": ("events_per_s", "ratio_to_pgbench"),
    "read_model_limit": ("docs_per_s", "ratio"),
}


def test_quick_bench_accounts_for_every_event_and_writes_every_figure(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, mongodb_uri: str, registry_url: str
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "acme_customer.entrypoints.cli", "bench", "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    (json_path,) = tmp_path.glob("*.json")
    assert json_path.with_suffix(".png").stat().st_size > 10_000
    results = json.loads(json_path.read_text())

    assert results["accounting"] == []
    for part in ("pipeline", "per_event"):
        (run,) = results[part]["runs"]
        # 1 % of the deliveries are the same record again: they make no customer of their own
        assert (run["events"], run["unique"]) == ((2000, 1980) if part == "pipeline" else (200, 198))
        assert set(run["counts"].values()) == {run["unique"]}, run["counts"]
        assert sum(run["committed_per_second"]) == run["unique"]
        # what was left to project when the last event was published, and how long it took
        drain = run["projection_drain"]
        assert 0 <= drain["documents"] <= run["unique"] and drain["seconds"] >= 0, drain
        assert (run["projection_drain_per_s"] is None) == (drain["documents"] == 0), run
    for part, keys in KEYS.items():
        for key in keys:
            assert results[part][key] > 0, (part, key)
    latency = results["latency_ms"]
    (offered,) = latency["runs"]
    assert offered["sent"] == int(latency["offered_rate"] * latency["seconds"])
    for series in ("commit", "published", "read_model"):
        assert 0 < latency[series]["p50"] <= latency[series]["p95"] <= latency[series]["p99"] <= latency[series]["max"]
    assert results["machine"]["cores"] > 0 and len(results["machine"]["load_average_start"]) == 3
    # the table is printed, with the load average beside it
    assert "pipeline events/s" in finished.stdout and "load average" in finished.stdout
