"""``watcher demo``: the whole pipeline offline, on loopback.

A bundled sample feed is served on 127.0.0.1, a local webhook receiver stands in for Slack,
and a throw-away database records the poll; the alert that reached the receiver is returned.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

from watcher.config import Config, loads
from watcher.cycle import run_once

DEMO_CONFIG = """\
settings:
  database: {database}
  listen: null
feeds:
  - url: {feed_url}
    name: demo-world
    backfill: true          # alert on the items already in the feed at the first poll
rules:
  - name: istanbul-talks
    query: '"Istanbul talks" OR (Istanbul AND negotiat*) -football'
    notify: [demo-hook]
  - name: peskov
    any: [Peskov, "Kremlin spokesperson"]
    notify: [demo-hook]
notify:
  demo-hook:
    type: webhook
    url: {hook_url}
"""


@dataclass(frozen=True)
class DemoResult:
    config_text: str
    received: list[dict[str, Any]]


def feed_body() -> bytes:
    text = files("watcher.demo").joinpath("feed.xml").read_text(encoding="utf-8")
    return text.replace("{now}", format_datetime(datetime.now(UTC))).encode()


def run_demo() -> DemoResult:
    """Serve the sample feed, run one cycle against it, return what the receiver got."""
    received: list[dict[str, Any]] = []
    body = feed_body()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with (
        serve_on_loopback(Handler) as base,
        tempfile.TemporaryDirectory(prefix="watcher-demo-") as tmp,
    ):
        text = DEMO_CONFIG.format(
            database=Path(tmp, "demo.db"), feed_url=f"{base}/feed.xml", hook_url=f"{base}/hook"
        )
        config: Config = loads(text, "<demo>", env={})
        run_once(config)
    return DemoResult(text, received)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up early is not worth a traceback on the console."""


@contextmanager
def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
