"""How fast processes claim due feeds from one PostgreSQL.

    python3 bench/bench_claims.py [FEEDS] [--workers N]

Starts a PostgreSQL server of its own (Debian's binaries, as the tests do), schedules FEEDS
due feeds (default 100,000), then has N workers (default 4, as if 4 processes) claim them
until none is left, in claims of 1 and of 16 feeds, each claimed feed then renewed (as a
poll does once it has its host's slot) and recorded as polled (its next poll set, its lease
ended). Prints claims per second, the
database time of one claim, and the feeds one PostgreSQL serves at a 15-minute interval.
Target (DESIGN.md section 10): under 2 ms a claim, at least 1,000 polls a second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests import pg
from watcher.state import ScheduledFeed, Store, open_store

LEASE = timedelta(minutes=1)


def run(store_url: str, feeds: int, workers: int, batch: int) -> tuple[float, list[float]]:
    """Claim every feed in claims of ``batch``; the rate of polls claimed and recorded, and
    the time of each claim."""
    setup = open_store(store_url)
    now = datetime.now(UTC)
    names = [f"feed-{n}" for n in range(feeds)]
    setup.sync_feeds(
        [ScheduledFeed(n, f"http://127.0.0.1/{n}", timedelta(minutes=15), now) for n in names],
        now,
    )
    setup.close()
    stores = [open_store(store_url) for _ in range(workers)]
    times: list[list[float]] = [[] for _ in range(workers)]
    later = now + timedelta(minutes=15)

    def work(index: int, store: Store) -> None:
        owner = f"p{index}"
        while True:
            start = time.perf_counter()
            claimed = store.claim_feeds(owner, now, batch, LEASE)
            times[index].append(time.perf_counter() - start)
            if not claimed:
                return
            for name in claimed:
                store.renew_feed(owner, name, now + LEASE)  # as a poll does before its request
                store.record_unchanged(name, f"http://127.0.0.1/{name}", now, next_poll=later)

    threads = [
        threading.Thread(target=work, args=(index, store)) for index, store in enumerate(stores)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for store in stores:
        store.close()
    return feeds / elapsed, [t for each in times for t in each]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("feeds", nargs="?", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if pg.binaries() is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    servers = pg.start_server()
    server = next(servers)
    try:
        print(f"{args.feeds:,} due feeds, {args.workers} workers, PostgreSQL on loopback")
        for batch in (1, 16):
            rate, times = run(server.new_database(), args.feeds, args.workers, batch)
            per_claim = statistics.median(times) * 1000
            p99 = statistics.quantiles(times, n=100)[98] * 1000
            print(
                f"  claims of {batch:>2}: {rate:8,.0f} polls claimed and recorded/s; one claim"
                f" {per_claim:.2f} ms (p99 {p99:.2f} ms); at a 15-minute interval one"
                f" PostgreSQL serves {rate * 900:,.0f} feeds",
                flush=True,
            )
    finally:
        servers.close()


if __name__ == "__main__":
    main()
