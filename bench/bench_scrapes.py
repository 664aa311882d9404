"""Open files of a running daemon after many scrapes of /metrics and /healthz.

    python3 bench/bench_scrapes.py [SCRAPES]      (default 10,000: 5,000 of each)

Starts ``watcher run`` on a temp SQLite database with one feed served on loopback, scrapes
its endpoints one after another, and prints the process's open file descriptors before and
after, and the time of a scrape. Each request runs on a thread of its own, so a connection
opened per request and never closed would show here as two descriptors a scrape.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    b"<item><guid>1</guid><title>Old news</title></item></channel></rss>"
)


class Feed(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(FEED)))
        self.end_headers()
        self.wfile.write(FEED)

    def log_message(self, *args: object) -> None:
        pass


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return int(response.status)


def main(scrapes: int = 10_000) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        listen = "127.0.0.1:18977"
        config = Path(tmp, "watch.yaml")
        config.write_text(
            yaml.safe_dump(
                {
                    "settings": {"database": f"{tmp}/w.db", "listen": listen},
                    "feeds": [{"url": f"http://127.0.0.1:{server.server_port}/f", "name": "f"}],
                }
            )
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    get(f"http://{listen}/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            before = len(os.listdir(f"/proc/{daemon.pid}/fd"))
            times = []
            for n in range(scrapes):
                path = "/metrics" if n % 2 else "/healthz"
                start = time.perf_counter()
                get(f"http://{listen}{path}")
                times.append(time.perf_counter() - start)
            after = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    print(
        f"{scrapes:,} scrapes: open files {before} before, {after} after;"
        f" a scrape takes {statistics.median(times) * 1000:.1f} ms (median)"
    )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
