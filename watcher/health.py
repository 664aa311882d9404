"""The daemon's HTTP endpoint on ``settings.listen``: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""Returns what is wrong, or None when all is well."""


class HealthServer:
    """Serves ``/healthz`` (200 "ok", or 503 and the reason) and ``/metrics`` (Prometheus
    text) from a thread of its own."""

    def __init__(self, listen: str, check: Check, metrics: Callable[[], bytes]) -> None:
        host, _, port = listen.rpartition(":")
        handler = _handler(check, metrics)
        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.2,), name="health", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(check: Check, metrics: Callable[[], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                problem = check()
                body = (problem or "ok").encode() + b"\n"
                self._answer(503 if problem else 200, body, "text/plain; charset=utf-8")
            elif self.path == "/metrics":
                self._answer(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._answer(404, b"not found: try /healthz or /metrics\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
