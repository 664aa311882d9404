"""A full polling cycle over N feeds served on loopback, three ways:

    python3 bench/bench_poll.py [FEEDS]          (default 1000)

1. changed: every feed answers 200 with 50 new items (~110 KB), all parsed and stored;
2. unchanged body: every feed answers 200 with the same bytes again (a server that
   ignores conditional GET): watcher recognises the body and parses nothing;
3. not modified: every feed answers 304 to the ETag watcher sends.

The feeds are spread over 8 addresses of 127.0.0.0/8, so that the limit of 2 requests at
once per host does not decide the result. Targets (DESIGN.md section 10, 2 cores): under
10 s, 3 s and 1 s.

The feeds are served by nginx when it is installed (``apt-get install nginx-light``), else
by Python's http.server, which then takes a good part of the two cores for itself.
"""

from __future__ import annotations

import shutil
import subprocess
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


def python_servers() -> tuple[list[str], Any]:
    """http.server on each address: the base URLs, and a function to stop them."""
    servers = [Server((address, 0), Handler) for address in ADDRESSES]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    bases = [f"http://{a}:{s.server_address[1]}" for a, s in zip(ADDRESSES, servers, strict=True)]
    return bases, lambda: [server.shutdown() for server in servers]


NGINX = """
daemon off; worker_processes 1; error_log {root}/error.log; pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 100000; default_type application/rss+xml;
  server {{
    {listen}
    root {root}/www;
    location /plain/ {{ etag off; if_modified_since off; }}
    location /cond/ {{ }}
  }}
}}
"""


def nginx_servers(root: Path) -> tuple[list[str], Any]:
    """nginx on each address: /plain/ ignores conditional GET, /cond/ answers 304."""
    root.chmod(0o755)  # nginx's workers run as an unprivileged user
    for folder in ("plain", "cond"):
        Path(root, "www", folder).mkdir(parents=True)
        Path(root, "www", folder, "feed.xml").write_bytes(Handler.body)
    port = 18080
    listen = " ".join(f"listen {address}:{port};" for address in ADDRESSES)
    Path(root, "nginx.conf").write_text(NGINX.format(root=root, listen=listen))
    process = subprocess.Popen(["nginx", "-c", str(Path(root, "nginx.conf")), "-p", str(root)])
    time.sleep(0.5)
    return [f"http://{address}:{port}" for address in ADDRESSES], process.terminate


def cycle(label: str, urls: list[str], database: Path, *, quiet: bool = False) -> None:
    config = {
        "settings": {"database": str(database), "listen": None},
        "feeds": [{"url": url, "name": f"feed-{n}"} for n, url in enumerate(urls)],
        "rules": [{"name": "talks", "query": '"Istanbul talks" OR Peskov'}],
    }
    start = time.perf_counter()
    report = run_once(loads(yaml.safe_dump(config), "bench", env={}))
    elapsed = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for outcome in report.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    if not quiet:
        print(f"  {label:>15}: {elapsed:6.2f} s  {statuses}")


def main(count: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        use_nginx = shutil.which("nginx") is not None
        bases, stop = nginx_servers(Path(tmp)) if use_nginx else python_servers()
        server = "nginx" if use_nginx else "Python's http.server (install nginx for a fair figure)"
        print(f"{count} feeds of {len(Handler.body) / 1000:.0f} KB, 50 items; concurrency 16;")
        print(f"served by {server}")
        try:
            if use_nginx:
                plain = [f"{bases[n % 8]}/plain/feed.xml?{n}" for n in range(count)]
                cond = [f"{bases[n % 8]}/cond/feed.xml?{n}" for n in range(count)]
                cycle("changed", plain, Path(tmp, "a.db"))
                cycle("unchanged body", plain, Path(tmp, "a.db"))
                cycle("first poll", cond, Path(tmp, "b.db"), quiet=True)
                cycle("not modified", cond, Path(tmp, "b.db"))
            else:
                urls = [f"{bases[n % 8]}/feed/{n}" for n in range(count)]
                cycle("changed", urls, Path(tmp, "a.db"))
                cycle("unchanged body", urls, Path(tmp, "a.db"))
                Handler.honour_etag = True
                cycle("not modified", urls, Path(tmp, "a.db"))
        finally:
            stop()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
