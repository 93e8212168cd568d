"""Faust's aiohttp web server, with a port already in use reported as one line (exit 2).

Several workers on one host each need their own web port (``WEB_PORT``, or ``faust worker
--web-port``). Faust would end a worker whose port is taken with an ``OSError`` traceback; this
driver says what to do instead. It is registered under the ``faust.web.drivers`` entry point as
``acme`` (setup.cfg), Faust's documented way to add a web driver, and selected with
``conf.web = "acme://"``.
"""

from __future__ import annotations

import errno
import os
import sys

from faust.web.drivers.aiohttp import Web as AiohttpWeb

from acme_customer.logs import fatal_line

SCHEME = "acme://"


class Web(AiohttpWeb):
    async def start_server(self) -> None:
        try:
            await super().start_server()
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            conf = self.app.conf
            message = (
                f"acme-customer: cannot start: web port {conf.web_port} on {conf.web_bind} is in use"
                " (another worker on this host?); give each worker its own WEB_PORT"
                " or `faust worker --web-port N`"
            )
            print(fatal_line(message, os.environ), file=sys.stderr, flush=True)
            raise SystemExit(2) from None
