"""Delivery throughput: deliveries per second from the outbox to a local receiver, with 4
notifiers (webhook, Slack, Discord and a signed webhook) draining in parallel.

    python3 bench/bench_deliver.py [MATCHES]      (default 500, so 2,000 deliveries)

Each delivery is claimed (a lease, one SQLite transaction), posted over HTTP to 127.0.0.1,
and recorded as sent (another transaction): the figure is the outbox's own cost plus a
loopback round trip. Rate limits are lifted so that they do not decide the result.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

from watcher.config import loads
from watcher.deliver import deliver_due
from watcher.demo import serve_on_loopback
from watcher.http import new_session
from watcher.models import Entry
from watcher.notify import build_notifiers
from watcher.rules import Match
from watcher.state import NewItem, open_store

NOTIFIERS = ("hook", "slack", "discord", "signed")


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(matches: int = 500) -> None:
    with serve_on_loopback(Receiver) as base, tempfile.TemporaryDirectory() as tmp:
        fast = {"rate": "100000/s", "timeout": "5s"}
        sections = {
            "hook": {"type": "webhook", "url": f"{base}/hook", **fast},
            "slack": {"type": "slack", "url": f"{base}/slack", **fast},
            "discord": {"type": "discord", "url": f"{base}/discord", **fast},
            "signed": {"type": "webhook", "url": f"{base}/signed", "secret": "s", **fast},
        }
        config = loads(yaml.safe_dump({"notify": sections}), "bench", env={})
        notifiers = build_notifiers(config, new_session("bench", pool_size=8))
        store = open_store(Path(tmp, "bench.db"))
        now = datetime.now(UTC)
        items = [
            NewItem(
                Entry(
                    f"k{n}", title=f"Istanbul talks, update {n}", link=f"https://n.example.org/{n}"
                ),
                (Match("talks", ("Istanbul talks",), NOTIFIERS),),
            )
            for n in range(matches)
        ]
        store.ingest(
            "bench",
            "http://bench",
            etag=None,
            last_modified=None,
            present=[],
            new_items=items,
            now=now,
        )
        start = time.perf_counter()
        report = deliver_due(store, notifiers, config.settings.retry, now)
        elapsed = time.perf_counter() - start
        store.close()
    print(
        f"{report.sent:,} deliveries ({matches:,} alerts x {len(NOTIFIERS)} notifiers) in "
        f"{elapsed:.2f} s: {report.sent / elapsed:,.0f} deliveries/s "
        f"(receiver took {Receiver.received:,})"
    )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
