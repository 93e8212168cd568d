"""The read API of the session worker (API_TOKENS holds two tokens, as during a rotation).

The customer routes need ``Authorization: Bearer <token>``; /health, /ready and /metrics stay open.
(A worker without tokens: test_00_worker_lifecycle.py; with API_TOKENS_FILE: test_01_read_api_token_file.py.)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import (
    API_TOKEN,
    API_TOKENS,
    Stack,
    Worker,
    as_record,
    http_get,
    http_json,
    user_registered,
    wait_for,
)

pytestmark = pytest.mark.e2e

WRONG_TOKENS = [
    None,
    "wrong-token-0123456789abcdef",
    API_TOKEN[:-1],
    API_TOKEN + "0",
    f"{API_TOKENS[0]},{API_TOKENS[1]}",
]


@pytest.fixture(scope="module")
def customer(stack: Stack, worker: Worker) -> dict[str, Any]:
    """One customer's read-model document, projected by the session worker."""
    event = user_registered(first_name="Tokenia", last_name="Reader", email="tokenia.reader@example.com")
    stack.produce([as_record(event)])
    return wait_for(lambda: stack.mongo().find_one({"userId": event["payload"]["userId"]}), 15, "the document")


def _routes(worker: Worker, customer: dict[str, Any]) -> list[str]:
    api = f"{worker.url}/api/v1/customers"
    return [
        f"{api}/{customer['_id']}",
        f"{api}?customerNumber={customer['customerNumber']}",
        f"{api}?userId={customer['userId']}",
        api,
    ]


def test_the_customer_api_answers_401_without_a_valid_bearer_token_and_shows_no_customer(
    worker: Worker, customer: dict[str, Any]
) -> None:
    for url in _routes(worker, customer):
        for token in WRONG_TOKENS:
            status, headers, body = http_get(url, token)
            assert status == 401, (url, token)
            assert headers["WWW-Authenticate"].startswith('Bearer realm="acme-customer"')
            assert json.loads(body) == {"error": "a valid bearer token is required"}
            for value in (customer["customerNumber"], "Tokenia", "tokenia.reader@example.com"):
                assert value not in body.decode()


@pytest.mark.parametrize("token", API_TOKENS)
def test_either_of_two_rotated_tokens_reads_the_customer(worker: Worker, customer: dict[str, Any], token: str) -> None:
    by_id, by_number, by_user, _ = _routes(worker, customer)

    status, body = http_json(by_number, token)

    assert status == 200
    assert body["customerId"] == customer["_id"]
    assert body["name"]["firstName"] == "Tokenia"
    assert http_json(by_id, token) == http_json(by_user, token) == (status, body)


@pytest.mark.parametrize(
    "number",
    [
        "ACME-2026-000001",
        "ACME-202613-000001",
        "ACME-202601-00001",
        "ACME-202601-000000",
        "acme-202601-000001",
        "ACME-202601-00000x",
        "ACME-202601-000001 ",
        "ACME-202601-٠٠٠٠٠١",  # Arabic-Indic digits: isdigit() would take them
        "ACME-202601-0000001",  # past 999999 a number grows a digit, never a leading zero
    ],
)
def test_a_malformed_customer_number_is_400(worker: Worker, number: str) -> None:
    status, body = http_json(f"{worker.url}/api/v1/customers?customerNumber={quote(number)}", API_TOKEN)

    assert (status, body) == (400, {"error": "customerNumber must be ACME-YYYYMM-NNNNNN"})


def test_a_well_formed_customer_number_of_nobody_is_404(worker: Worker) -> None:
    status, body = http_json(f"{worker.url}/api/v1/customers?customerNumber=ACME-199001-999999", API_TOKEN)

    assert (status, body) == (404, {"error": "customer not found"})


def test_health_readiness_and_metrics_need_no_token(worker: Worker) -> None:
    assert http_json(f"{worker.url}/health") == (200, {"status": "UP"})
    assert http_json(f"{worker.url}/ready")[0] == 200
    status, headers, body = http_get(f"{worker.url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"customer_created_total" in body


def test_the_worker_log_holds_no_token(worker: Worker, customer: dict[str, Any]) -> None:
    for url in _routes(worker, customer):  # requests with every token, right or wrong, then read the log
        for token in [*API_TOKENS, *WRONG_TOKENS]:
            http_get(url, token)

    log = worker.log_path.read_text(errors="replace")

    for token in [*API_TOKENS, "wrong-token-0123456789abcdef"]:
        assert token not in log
