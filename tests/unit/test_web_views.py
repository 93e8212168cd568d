"""The view wrappers inside Faust's real web stack (Faust views on aiohttp, in process, no broker).

The first two tests pin what Faust and aiohttp do on their own with an exception in a view: the
reason ``guarded`` exists, and a tripwire should an upgrade change it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.web import Request, Response, View

from acme_customer.entrypoints.api_auth import ApiAccess, FixedTokens
from acme_customer.entrypoints.web import guarded, requires_token

OLD = "old-token-0123456789abcdef"
NEW = "new-token-fedcba9876543210"
PERSONAL = "jane.doe@example.com"  # what an exception message may quote


async def _boom(self: View, request: Request) -> Response:
    raise RuntimeError(f"driver said: no document for {PERSONAL}")


async def _profile(self: View, request: Request) -> Response:
    return self.json({"customerNumber": "ACME-202601-000001"})


@asynccontextmanager
async def serving(
    *pages: tuple[str, Callable[..., Any]], loop_debug: bool = False
) -> AsyncIterator[TestClient[Any, Any]]:
    """A throwaway Faust app with these pages, served by aiohttp (with the loop in debug mode if asked)."""
    app = faust.App(f"test-web-{id(pages)}", web_enabled=True, autodiscover=False)
    for path, handler in pages:
        app.page(path)(handler)
    loop = asyncio.get_running_loop()
    was_debug = loop.get_debug()
    loop.set_debug(loop_debug)  # aiohttp reads it when the server starts
    try:
        async with TestClient(TestServer(app.web.web_app)) as client:
            yield client
    finally:
        loop.set_debug(was_debug)


# --- what Faust and aiohttp do without the wrapper --------------------------------------------


async def test_unguarded_faust_answers_a_view_exception_with_aiohttp_plain_text_500() -> None:
    async with serving(("/boom", _boom)) as client:
        response = await client.get("/boom")
        body = await response.text()

    assert response.status == 500
    assert response.content_type == "text/plain"
    assert body == "500 Internal Server Error\n\nServer got itself in trouble"


async def test_unguarded_faust_sends_the_traceback_to_the_caller_when_the_loop_is_in_debug_mode() -> None:
    async with serving(("/boom", _boom), loop_debug=True) as client:
        body = await (await client.get("/boom")).text()

    assert "Traceback (most recent call last)" in body
    assert PERSONAL in body


# --- guarded ----------------------------------------------------------------------------------


async def test_a_guarded_view_answers_an_exception_with_a_fixed_json_500_and_logs_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="acme_customer")
    async with serving(("/boom", guarded(_boom)), loop_debug=True) as client:
        response = await client.get("/boom?customerNumber=ACME-202601-000001")
        body = await response.json()

    assert response.status == 500
    assert body == {"error": "internal error"}
    (entry,) = [entry for entry in caplog.records if entry.name == "acme_customer.entrypoints.web"]
    assert entry.getMessage() == "unexpected error answering GET /boom"
    assert entry.exc_info is not None and isinstance(entry.exc_info[1], RuntimeError)


async def test_a_guarded_view_answers_as_the_view_does_when_nothing_is_raised() -> None:
    async with serving(("/profile", guarded(_profile))) as client:
        response = await client.get("/profile")

        assert (response.status, await response.json()) == (200, {"customerNumber": "ACME-202601-000001"})


# --- requires_token ---------------------------------------------------------------------------


def _protected(access: ApiAccess) -> tuple[str, Callable[..., Any]]:
    return ("/api/v1/customers", guarded(requires_token(lambda: access)(_profile)))


async def test_a_protected_view_answers_401_with_a_bearer_challenge_without_a_valid_token() -> None:
    async with serving(_protected(ApiAccess(FixedTokens((OLD, NEW))))) as client:
        missing = await client.get("/api/v1/customers")
        wrong = await client.get("/api/v1/customers", headers={"Authorization": "Bearer wrong-token-000000000000"})
        basic = await client.get("/api/v1/customers", headers={"Authorization": f"Basic {OLD}"})

        for response in (missing, wrong, basic):
            assert response.status == 401
            assert await response.json() == {"error": "a valid bearer token is required"}
            assert "customerNumber" not in await response.text()
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="acme-customer"'
        assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="acme-customer", error="invalid_token"'


@pytest.mark.parametrize("token", [OLD, NEW])
async def test_a_protected_view_answers_with_either_of_two_valid_tokens(token: str) -> None:
    async with serving(_protected(ApiAccess(FixedTokens((OLD, NEW))))) as client:
        response = await client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})

        assert (response.status, await response.json()) == (200, {"customerNumber": "ACME-202601-000001"})


async def test_a_protected_view_is_503_for_everyone_while_no_token_is_configured() -> None:
    async with serving(_protected(ApiAccess(None))) as client:
        response = await client.get("/api/v1/customers", headers={"Authorization": f"Bearer {OLD}"})

        assert response.status == 503
        assert await response.json() == {"error": "read API disabled: set API_TOKENS or API_TOKENS_FILE"}
