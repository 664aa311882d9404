"""A full polling cycle over N feeds served on loopback, three ways:

    python3 bench/bench_poll.py [FEEDS]          (default 1000)

1. changed: every feed answers 200 with 50 new items (~110 KB), all parsed and stored;
2. unchanged body: every feed answers 200 with the same bytes again (a server that
   ignores conditional GET): watcher recognises the body and parses nothing;
3. not modified: every feed answers 304 to the ETag watcher sends.

The feeds are spread over 8 addresses of 127.0.0.0/8, so that the limit of 2 requests at
once per host does not decide the result. Targets (DESIGN.md section 10, 2 cores): under
10 s, 3 s and 1 s.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml

from watcher.config import loads
from watcher.cycle import run_once

ADDRESSES = [f"127.0.0.{n}" for n in range(1, 9)]
WORDS = "talks ceasefire minister kremlin istanbul summit delegation sanctions".split()


def feed_body(items: int = 50) -> bytes:
    date = format_datetime(datetime.now(UTC))
    text = " ".join(WORDS * 28)
    parts = [
        f"<item><guid>item-{n}</guid><title>{escape(WORDS[n % 8])} update {n}</title>"
        f"<link>https://news.example.org/{n}</link><pubDate>{date}</pubDate>"
        f"<description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
        for n in range(items)
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>bench</title>'
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = feed_body()
    honour_etag = False

    def do_GET(self) -> None:
        if Handler.honour_etag and self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(Handler.body)))
        self.end_headers()
        self.wfile.write(Handler.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


def main(count: int = 1000) -> None:
    servers = [Server((address, 0), Handler) for address in ADDRESSES]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        feeds = [
            {
                "url": f"http://{ADDRESSES[n % 8]}:{servers[n % 8].server_address[1]}/feed/{n}",
                "name": f"feed-{n}",
            }
            for n in range(count)
        ]
        text = yaml.safe_dump(
            {
                "settings": {"database": str(Path(tmp, "bench.db")), "listen": None},
                "feeds": feeds,
                "rules": [{"name": "talks", "query": '"Istanbul talks" OR Peskov'}],
            }
        )
        config = loads(text, "bench", env={})
        print(f"{count} feeds of {len(Handler.body) / 1000:.0f} KB, 50 items; concurrency 16")
        for label, honour in (
            ("changed", False),
            ("unchanged body", False),
            ("not modified", True),
        ):
            Handler.honour_etag = honour
            start = time.perf_counter()
            report = run_once(config)
            elapsed = time.perf_counter() - start
            statuses: dict[str, int] = {}
            for outcome in report.outcomes:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            print(f"  {label:>15}: {elapsed:6.2f} s  {statuses}")
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
