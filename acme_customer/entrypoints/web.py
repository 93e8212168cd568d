"""Wrappers for the Faust web views: a bearer token in front of the read API, no traceback in any answer.

Faust's ``View.dispatch`` only turns its own ``WebError`` into a response; any other exception
reaches aiohttp, which answers a text/plain 500 and, when the event loop runs in debug mode
(``PYTHONASYNCIODEBUG=1``, ``python -X dev``), the traceback itself, exception message and all
(``tests/unit/test_web_views.py`` shows both). ``guarded`` answers a fixed JSON 500 instead and
leaves the traceback to the log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.web import Request, Response, View

from acme_customer.entrypoints.api_auth import API_DISABLED, Access, ApiAccess

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]

INTERNAL_ERROR = {"error": "internal error"}
REALM = 'Bearer realm="acme-customer"'


def guarded(handler: Handler) -> Handler:
    """Answer an unexpected exception with a fixed JSON 500; its traceback goes to the log only."""

    @functools.wraps(handler)
    async def view(self: View, request: Request, **match: Any) -> Response:
        try:
            return await handler(self, request, **match)
        except Exception:
            # the path only: a query string is the caller's, and is not needed to find the bug
            logger.exception("unexpected error answering %s %s", request.method, request.rel_url.path)
            return self.json(INTERNAL_ERROR, status=500)

    return view


def requires_token(access: Callable[[], ApiAccess]) -> Callable[[Handler], Handler]:
    """Let a request through only with a valid bearer token: else 401, or 503 while the API is disabled."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def view(self: View, request: Request, **match: Any) -> Response:
            verdict = access().check(request.headers.get("Authorization"))
            if verdict is Access.GRANTED:
                return await handler(self, request, **match)
            if verdict is Access.DISABLED:
                return self.json({"error": API_DISABLED}, status=503)
            # RFC 6750: no error code when no credentials came, invalid_token for a wrong one
            challenge = REALM if verdict is Access.MISSING else f'{REALM}, error="invalid_token"'
            return self.json(
                {"error": "a valid bearer token is required"}, status=401, headers={"WWW-Authenticate": challenge}
            )

        return view

    return decorate
