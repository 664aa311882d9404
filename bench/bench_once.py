"""End to end: ``watcher once --dry-run`` over one feed of 4,000 items, with 1 rule and with
10,000 rules. The target is a ratio of at most 2 (DESIGN.md section 10).

    python3 bench/bench_once.py [ITEMS] [RULES]

Each run is a fresh process, so config loading, rule compilation, fetching and parsing the
feed are all counted. The feed is served on 127.0.0.1 and every item is matched
(``backfill: true``).
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_rules import make_items, make_rules, vocabulary

from watcher.demo import serve_on_loopback
from watcher.query import to_query


def feed(items: list[dict[str, str]]) -> bytes:
    date = format_datetime(datetime.now(UTC))
    parts = [
        f"<item><guid>item-{n}</guid><title>{escape(item['title'])}</title>"
        f"<link>https://news.example.org/{n}</link><pubDate>{date}</pubDate>"
        f"<description>{escape(item['summary'])}</description></item>"
        for n, item in enumerate(items)
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>bench</title>'
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


def config(path: Path, url: str, rules: list[str], database: Path) -> Path:
    data = {
        "settings": {"database": str(database), "listen": None, "max_item_age": "30d"},
        "feeds": [{"url": url, "name": "bench", "backfill": True}],
        "rules": [{"name": f"r{n}", "query": query} for n, query in enumerate(rules)],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def timed(config_path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "watcher", "once", "--dry-run", "-c", str(config_path)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main(item_count: int = 4000, rule_count: int = 10_000) -> None:
    rng = random.Random(7)
    words = vocabulary(rng)
    items = make_items(words, rng)
    while len(items) < item_count:
        items += make_items(words, rng)
    body = feed(items[:item_count])
    rule_sets = {
        label: [to_query(rule.query) for rule in make_rules(rule_count, words, rng, commonest)]
        for label, commonest in (("specific terms", 5000), ("any content word", 500))
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_on_loopback(Handler) as base, tempfile.TemporaryDirectory() as tmp:
        url = f"{base}/feed.xml"
        print(f"feed of {item_count:,} items ({len(body) / 1e6:.1f} MB), once --dry-run, best of 3")
        first = rule_sets["specific terms"][:1]
        single = min(
            timed(config(Path(tmp, "one.yaml"), url, first, Path(tmp, "1.db"))) for _ in range(3)
        )
        print(f"  {1:>6} rule:  {single:6.2f} s")
        for label, queries in rule_sets.items():
            many = config(Path(tmp, "many.yaml"), url, queries, Path(tmp, "n.db"))
            multiple = min(timed(many) for _ in range(3))
            ratio = multiple / single
            print(
                f"  {rule_count:>6} rules on {label}: {multiple:6.2f} s"
                f"  (ratio {ratio:.2f}, target <= 2)"
            )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
