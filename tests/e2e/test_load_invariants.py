"""1,000 deliveries from 300 users (redeliveries, second registrations, reordering, two months),
then every invariant of DESIGN.md checked over the whole result."""

from __future__ import annotations

import random
import re
import uuid
from collections import defaultdict
from typing import Any

import pytest

from tests.e2e.conftest import Stack, Worker, as_record, http_text, user_registered, wait_for

pytestmark = pytest.mark.e2e

USERS = 300
DELIVERIES = 1000
MONTHS = ("2026-03-15T12:00:00Z", "2026-04-01T00:00:00Z")


def _deliveries(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    deliveries: list[dict[str, Any]] = []
    for index in range(USERS):
        event = user_registered(registered_at=MONTHS[index % 2], marketing_opt_in=index % 3 == 0)
        by_user[event["payload"]["userId"]].append(event)
        deliveries.append(event)
    users = list(by_user)
    while len(deliveries) < DELIVERIES:
        user_id = rng.choice(users)
        if rng.random() < 0.7:
            deliveries.append(rng.choice(by_user[user_id]))  # the same event delivered again
        else:  # the identity service registered the same user again (another eventId)
            again = user_registered(user_id=user_id, registered_at=MONTHS[rng.randrange(2)])
            by_user[user_id].append(again)
            deliveries.append(again)
    rng.shuffle(deliveries)  # duplicates may now arrive before the event they repeat
    return deliveries, by_user


_BUCKET = re.compile(r'^event_processing_lag_seconds_bucket\{event_type="(\w+)",le="([^"]+)"\} (\S+)$', re.M)


def _lag_buckets(worker: Worker) -> dict[tuple[str, str], float]:
    text = http_text(f"{worker.url}/metrics")
    return {(kind, bound): float(count) for kind, bound, count in _BUCKET.findall(text)}


def test_invariants_hold_over_1000_deliveries_from_300_users(stack: Stack, worker: Worker) -> None:
    rng = random.Random(20260228)
    deliveries, by_user = _deliveries(rng)
    user_ids = list(by_user)
    since = stack.end_offsets("customer.events")
    lags_before = _lag_buckets(worker)
    stack.produce([as_record(event) for event in deliveries])

    collection = stack.mongo()
    wait_for(
        lambda: collection.count_documents({"userId": {"$in": user_ids}}) == USERS, 120, "every document", interval=0.5
    )
    lags_after = _lag_buckets(worker)

    customers = stack.sql(
        "SELECT c.id::text, c.user_id::text, c.customer_number, c.created_at, p.marketing_communications"
        " FROM customers c JOIN customer_preferences p ON p.customer_id = c.id WHERE c.user_id = ANY(%s::uuid[])",
        (user_ids,),
    )
    # 1. exactly one customer (and one preferences row) per user
    assert sorted(row[1] for row in customers) == sorted(user_ids)
    # 2. gapless, unique numbers per month, over the whole database
    numbers = defaultdict(list)
    for (number,) in stack.sql("SELECT customer_number FROM customers"):
        _, year_month, sequence = number.split("-")
        numbers[year_month].append(int(sequence))
    for year_month, sequences in numbers.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), f"gap or repeat in {year_month}"
    counters = dict(stack.sql("SELECT year_month, current_value FROM customer_number_sequences"))
    assert counters == {year_month: len(sequences) for year_month, sequences in numbers.items()}
    assert {"202603", "202604"} <= set(numbers)
    # 3. one CustomerRegistered per customer in the event store, and no event without its customer
    orphans = stack.sql(
        "SELECT COUNT(*) FROM event_store e LEFT JOIN customers c ON c.id = e.aggregate_id WHERE c.id IS NULL"
    )
    assert orphans == [(0,)]
    per_customer = stack.sql(
        "SELECT c.id::text, COUNT(e.event_id) FROM customers c LEFT JOIN event_store e ON e.aggregate_id = c.id"
        " GROUP BY c.id HAVING COUNT(e.event_id) <> 1"
    )
    assert per_customer == []
    # every delivered eventId is recorded as processed, linked to its user's customer
    customer_of_user = {row[1]: row[0] for row in customers}
    processed = dict(
        stack.sql(
            "SELECT event_id::text, customer_id::text FROM processed_events WHERE event_id = ANY(%s::uuid[])",
            ([event["eventId"] for event in deliveries],),
        )
    )
    for event in deliveries:
        assert processed[event["eventId"]] == customer_of_user[event["payload"]["userId"]]
    # 4. one document per customer with matching fields
    documents = {doc["_id"]: doc for doc in collection.find({"userId": {"$in": user_ids}})}
    assert len(documents) == USERS
    for customer_id, user_id, number, _, marketing in customers:
        document = documents[customer_id]
        assert (document["userId"], document["customerNumber"], document["_version"]) == (user_id, number, 1)
        assert document["preferences"]["communication"]["marketing"] is marketing
    # 5. every stored CustomerRegistered reached customer.events, caused by one of its user's events
    stored = {
        row[0]: row[1]
        for row in stack.sql(
            "SELECT event_id::text, envelope FROM event_store WHERE aggregate_id = ANY(%s::uuid[])",
            ([row[0] for row in customers],),
        )
    }

    def all_published(records: list[Any]) -> bool:
        return stored.keys() <= {event["eventId"] for event in stack.decode([record.value for record in records])}

    records = stack.read_since("customer.events", since, all_published, timeout=60)
    published = stack.decode([record.value for record in records])
    mine = [envelope for envelope in published if envelope["eventId"] in stored]
    assert {envelope["eventId"] for envelope in mine} == stored.keys()
    for envelope in mine:
        user_id = envelope["payload"]["userId"]
        assert envelope["causationId"] in {event["eventId"] for event in by_user[user_id]}
        assert envelope == stored[envelope["eventId"]]
    duplicates_on_topic = len(mine) - len(stored)
    # The burst's latency, reported, not asserted: a burst of 1,000 on a shared 2-core machine says
    # nothing stable about AC-01 and AC-05, which test_steady_rate_latency asserts at a rate the
    # machine sustains (and the benchmark measures). From the worker's own lag histograms.
    observed = {key: lags_after[key] - lags_before.get(key, 0) for key in lags_after}
    created = observed[("UserRegistered", "+Inf")]
    projected = observed[("CustomerRegistered", "+Inf")]
    print(
        f"\n{DELIVERIES} deliveries, {USERS} customers, {duplicates_on_topic} duplicate(s) on customer.events; "
        f"UserRegistered lag <= 1 s: {observed[('UserRegistered', '1.0')]}/{created}, "
        f"<= 5 s: {observed[('UserRegistered', '5.0')]}/{created}; "
        f"CustomerRegistered -> MongoDB <= 1 s: {observed[('CustomerRegistered', '1.0')]}/{projected}, "
        f"<= 2 s: {observed[('CustomerRegistered', '2.0')]}/{projected}"
    )
    assert created >= USERS
    assert projected >= USERS
    assert uuid.UUID(customers[0][0]).version == 7
