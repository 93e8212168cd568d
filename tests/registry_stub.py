"""A stand-in for a proxy in front of a schema registry that is down: every request gets 503 HTML."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class ErrorPage(BaseHTTPRequestHandler):
    """Answers every request with a 503 and an HTML body (what a proxy says when the registry is down)."""

    def _answer(self) -> None:
        body = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet: the tests assert on what the client sees."""
