"""Latency of the web pages on a large SQLite database: 10,000 feeds, 1,000,000 items.

    python3 bench/bench_web.py [--db PATH] [--requests N]

Builds the database at PATH (default: a temp folder; an existing one is reused, so a second
run measures at once) through the state interface, as polls fill it: 10,000 feeds of 100
items each, first seen over 90 days (the default retention), titles and summaries drawn from
a 20,000-word vocabulary with Zipf frequencies plus the news words the rules look for; 1 % of
the items match a rule and have a delivery (90 % sent, 5 % dead, 5 % pending); 3 % of the
feeds fail, 0.5 % are gone. Then serves the pages with watcher's own server on loopback and
prints, per page, the median and 90th percentile of N requests (default 20) made one after
another over HTTP. Target (DESIGN.md section 10): under 100 ms each, the rule tester
included (``since=7d``).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import string
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import yaml

sys.path.insert(0, str(Path(__file__).parent.parent))
from watcher.config import loads
from watcher.models import Entry
from watcher.rules import Hit, Match
from watcher.state import NewItem, ScheduledFeed, Store, open_store
from watcher.web import Site, WebApp, WebServer

FEEDS = 10_000
ITEMS_PER_FEED = 100
VOCABULARY = 20_000
NEWS = ["Istanbul", "talks", "Peskov", "ceasefire", "Kremlin", "negotiations", "summit"]
"""Words the rules and queries look for, each in about 1 % of the items."""
SPAN = timedelta(days=90)
NOW = datetime.now(UTC)

PAGES = [
    "/",
    "/feeds",
    "/feeds?status=failing",
    "/feeds?after=feed-05000",
    "/feeds/feed-09999",
    "/matches",
    "/matches?rule=talks&since=7d",
    "/deliveries",
    "/deliveries?status=dead",
    "/deliveries?status=failed",
    "/test?q=" + quote('"Istanbul talks" OR Peskov') + "&since=7d",
    "/test?q=ceasefire+-Kremlin&since=7d",
    "/test?q=" + quote("/peace\\s+process/") + "&since=7d",
    "/search?q=Peskov",
    "/search?q=negotiat*",
    "/api/feeds",
    "/api/matches?since=7d",
    "/api/deliveries",
    "/healthz",
]


def words(rng: random.Random) -> tuple[list[str], list[float]]:
    found: dict[str, None] = {}
    while len(found) < VOCABULARY:
        found["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))] = None
    vocabulary = list(found)
    return vocabulary, list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))


def text(rng: random.Random, vocabulary: list[str], weights: list[float], count: int) -> str:
    chosen = rng.choices(vocabulary, cum_weights=weights, k=count)
    for index in range(count):
        if rng.random() < 0.01:
            chosen[index] = rng.choice(NEWS)
    return " ".join(chosen)


def build(path: Path) -> None:
    rng = random.Random(13)
    vocabulary, weights = words(rng)
    store = open_store(path)
    names = [f"feed-{n:05d}" for n in range(FEEDS)]
    start = NOW - SPAN
    store.sync_feeds(
        [
            ScheduledFeed(n, f"https://example.org/{n}.xml", timedelta(minutes=5), start)
            for n in names
        ],
        start,
    )
    began = time.perf_counter()
    for index, name in enumerate(names):
        moment = start + SPAN * index / FEEDS  # ids grow with time, as polls make them
        items = []
        for number in range(ITEMS_PER_FEED):
            title = text(rng, vocabulary, weights, 9).capitalize()
            entry = Entry(
                f"{name}-{number}",
                title=title,
                link=f"https://example.org/{name}/{number}",
                summary=f"<p>{text(rng, vocabulary, weights, 40)}.</p>",
                published=moment,
            )
            matched = ()
            if rng.random() < 0.01:
                hit = Hit("Istanbul", "title", ("istanbul",))
                matched = (Match("talks", ("Istanbul",), ("hook",), (hit,)),)
            items.append(NewItem(entry, matched))
        store.ingest(
            name,
            f"https://example.org/{name}.xml",
            etag=None,
            last_modified=None,
            present=[item.entry.key for item in items],
            new_items=items,
            now=moment,
        )
        if index % 1000 == 999:
            print(
                f"  {index + 1:,} feeds, {(index + 1) * ITEMS_PER_FEED:,} items stored"
                f" ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    for index, name in enumerate(names):
        if index % 200 == 7:
            store.record_failure(
                name, f"https://example.org/{name}.xml", "HTTP 410 Gone", NOW, gone=True
            )
        elif index % 33 == 5:
            store.record_failure(
                name, f"https://example.org/{name}.xml", "HTTP 503", NOW, retry_at=NOW
            )
    due = store.due_deliveries(NOW, ["hook"], limit=FEEDS * ITEMS_PER_FEED)
    ids = [delivery.id for delivery in due]
    store.mark_sent(ids[: len(ids) * 90 // 100], NOW)
    store.mark_failed(
        ids[len(ids) * 90 // 100 : len(ids) * 95 // 100], "HTTP 404", retry_at=None, now=NOW
    )
    store.close()


def config_text(database: Path) -> str:
    return yaml.safe_dump(
        {
            "settings": {"database": str(database), "listen": None},
            "feeds": [
                {"url": f"https://example.org/feed-{n:05d}.xml", "name": f"feed-{n:05d}"}
                for n in range(FEEDS)
            ],
            "rules": [
                {"name": "talks", "query": "Istanbul", "notify": ["hook"]},
                {"name": "peskov", "query": "Peskov"},
            ],
            "notify": {"hook": {"type": "webhook", "url": "https://hooks.example.org/w"}},
        }
    )


def measure(base: str, path: str, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=60) as response:
            response.read()
            assert response.status == 200, (path, response.status)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, help="database to build, or to reuse if it exists")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    database = args.db or Path(tempfile.mkdtemp(prefix="watcher-bench-web-")) / "w.db"
    if not database.exists():
        print(f"building {database}: {FEEDS:,} feeds, {FEEDS * ITEMS_PER_FEED:,} items")
        began = time.perf_counter()
        build(database)
        print(f"built in {time.perf_counter() - began:.0f} s")
    config = loads(config_text(database), "bench.yaml", env={})
    store: Store = open_store(database)
    counts = store.item_count(), len(store.feed_health()), store.delivery_counts()
    print(f"database {database}: {counts[0]:,} items, deliveries {counts[2]}")
    server = WebServer("127.0.0.1:0", WebApp(Site(store, lambda: config), loopback=True))
    server.start()
    base = f"http://{server.address}"
    failed = []
    try:
        for path in PAGES:
            measure(base, path, 1)  # warm: the first request of a page compiles its template
            times = sorted(measure(base, path, args.requests))
            median, p90 = statistics.median(times), times[int(len(times) * 0.9) - 1]
            if median >= 0.1:
                failed.append(path)
            print(f"{median * 1000:7.1f} ms median {p90 * 1000:7.1f} ms p90  {path}")
    finally:
        server.stop()
        store.close()
    print("every page under 100 ms (median)" if not failed else f"over 100 ms: {', '.join(failed)}")


if __name__ == "__main__":
    main()
