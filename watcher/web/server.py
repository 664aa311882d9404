"""The HTTP server on ``settings.listen``, in threads of its own beside the daemon's.

Werkzeug's threaded server: a thread per connection (as ``http.server`` gave before), each
ending with its connection; an idle keep-alive connection is closed after ``IDLE``. Its
request lines are not logged (a scrape every 15 s would flood the log), and every response,
the server's own errors for malformed requests included, carries the security headers.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, make_server

from watcher.web.headers import SECURITY_HEADERS

log = logging.getLogger(__name__)

IDLE = 30
"""Seconds a connection may stay silent before it is closed."""


class _Handler(WSGIRequestHandler):
    timeout = IDLE

    def version_string(self) -> str:
        return "watcher"  # not the versions of Werkzeug and Python

    def setup(self) -> None:
        super().setup()
        self._sent: set[str] = set()

    def send_header(self, keyword: str, value: str) -> None:
        self._sent.add(keyword.lower())
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            if name.lower() not in self._sent:
                super().send_header(name, value)
        self._sent = set()
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("web server: %s: %s", self.address_string(), message % args if args else message)


class WebServer:
    """Serves a WSGI application on ``listen`` (``host:port``, ``[v6]:port``) until
    stopped. Binding happens here, so an address in use is an ``OSError`` for the caller."""

    def __init__(self, listen: str, app: Any) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, int(port)))
            listener.listen(128)
            # the server listens on a duplicate of this socket; this one closes here
            self.server: ThreadedWSGIServer = make_server(  # type: ignore[assignment]
                host,
                int(port),
                app,
                threaded=True,
                request_handler=_Handler,
                fd=listener.fileno(),
            )
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.2,), name="web", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
