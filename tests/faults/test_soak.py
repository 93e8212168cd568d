"""Soak (manual, not in CI): 100,000 deliveries with 20 random kill -9s, then every invariant.

make soak        # about 10 minutes on 2 cores; the result row goes to test-results/reliability-results.md
"""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.harness import Producer, Run, Scenario, check_invariants

pytestmark = pytest.mark.soak

DELIVERIES = 100_000
USERS = 70_000
KILLS = 20


def test_soak_100k_deliveries_with_20_random_kills(run: Run) -> None:
    rng = random.Random(2026)
    scenario = Scenario(seed=2026, deliveries=DELIVERIES, users=USERS)
    run.use(scenario)
    run.start_worker()
    producer = Producer(run, scenario.chunks(100), 1.0)  # the input arrives over ~100 s
    producer.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(2.0, 8.0))
        for worker in run.alive_workers():
            run.kill(worker)
        run.start_worker()
        run.fault_ended()
    producer.wait()
    complete_at = run.wait_complete(1200)
    check_invariants(run.stack, run, complete_at)
