"""Story grouping: how well reports of one event are grouped, and what it costs.

    python3 bench/bench_stories.py [--stories 10000] [--postgres]

Quality, on the hand-written corpus (tests/data/stories*.yaml: the tuning part, and the
held-out parts written after the tuning), each report ingested in time order into a fresh
SQLite store as an item of its outlet's feed, matched by the corpus's rules:

- pairwise precision and recall: over every two reports a rule matched, whether they were
  put in one story, against whether they tell one;
- (rule, story) pairs lost: stories of a rule none of whose reports alerted (all grouped
  into another story: the error that loses an alert);
- repeat reports suppressed: of the reports beyond the first of each (rule, story), the
  share that sent nothing. Without grouping (``stories: null``) it is 0 %.

Speed: a store holding STORIES open stories of one rule (synthetic reports over a Zipf
vocabulary, all opened in the last 24 hours: the worst case, every story a candidate by
time), then 400 matched reports ingested one per transaction (an item, its match and its story),
half of them new reports of stored stories, half new stories, each once with grouping on
and once with it off (``stories: null``): the difference is what grouping costs a match.
And 2,000 items that match nothing, with the same store, to show they do not pay for it.
``--postgres`` measures the cost on a throwaway local PostgreSQL server too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests import pg, story_corpus
from watcher.models import Entry
from watcher.rules import Hit, Match
from watcher.state import NewItem, Store, open_store

WINDOW = timedelta(hours=24)
MATCHES = 400
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def quality() -> None:
    print("grouping quality (SQLite, reports in time order)")
    parts = [
        ("tuning", story_corpus.TUNING),
        ("held-out 1 (seen twice, then fixes)", story_corpus.HELD_OUT),
        ("held-out 2 (its one wrong merge studied)", story_corpus.HELD_OUT_2),
        ("held-out 3 (written blind, its wrong merge studied)", story_corpus.HELD_OUT_3),
    ]
    for name, path in parts:
        for window in (WINDOW, None):
            corpus = story_corpus.load(path, window)
            with tempfile.TemporaryDirectory() as folder:
                store = open_store(Path(folder) / "stories.db")
                figures = story_corpus.figures(story_corpus.replay(store, corpus))
                store.close()
            stories = len({report.story for report in corpus.reports})
            label = f"{name}, stories: {'24h' if window else 'null'}"
            print(
                f"  {label:48} {stories} stories, {len(corpus.reports)} reports,"
                f" {figures.matches} matches, {figures.pairs} (rule, story) pairs:"
                f" {figures.alerts} alerts; precision {figures.precision:.3f}, recall"
                f" {figures.recall:.3f}, lost {figures.lost}, suppressed {figures.suppressed:.1%}"
            )
            for rule, first, second in figures.wrong_merges:
                print(f"    wrongly grouped, rule {rule}: {first} with {second}")


class Vocabulary:
    """Synthetic news text: common words far more often than rare ones (Zipf), names."""

    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.words = [f"w{n}" for n in range(20_000)]
        self.weights = [1 / (rank + 1) for rank in range(len(self.words))]
        self.names = [f"Name{n}" for n in range(3_000)]

    def report(self) -> tuple[str, str]:
        pick = self.random.choices(self.words, self.weights, k=32)
        names = self.random.sample(self.names, 3)
        title = " ".join([*pick[:7], "Peskov", names[0]])
        lead = "The " + " ".join([*pick[7:], "with", names[1], "and", names[2]]) + "."
        return title, lead

    def retold(self, title: str, lead: str) -> tuple[str, str]:
        """Another outlet's report of the same story: most words kept, in another order."""
        words = title.split() + lead.rstrip(".").split()[1:]
        kept = [word for word in words if self.random.random() < 0.8]
        self.random.shuffle(kept)
        return " ".join(kept[:10]), "The " + " ".join(kept[10:]) + "."


def match(window: timedelta | None) -> Match:
    return Match("peskov", ("Peskov",), ("hook",), (Hit("Peskov", "title", ("peskov",)),), window)


def ingest(store: Store, feed: str, items: list[NewItem], now: datetime) -> int:
    """Ingest items as a poll of a feed; return the number of deliveries created."""
    return store.ingest(
        feed,
        f"https://{feed}.example/feed",
        etag=None,
        last_modified=None,
        present=[],
        new_items=items,
        now=now,
    )


def speed(stories: int, database: str | None) -> None:
    where = "PostgreSQL" if database else "SQLite"
    print(f"grouping cost ({where}, {stories:,} open stories of one rule)")
    words = Vocabulary()
    told = [words.report() for _ in range(stories)]
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(database or Path(folder) / "bench.db")
        started = time.perf_counter()
        batch: list[NewItem] = []
        for n, (title, lead) in enumerate(told):
            entry = Entry(f"s{n}", title=title, link=f"https://a.example/s{n}", summary=lead)
            batch.append(NewItem(entry, (match(WINDOW),)))
            if len(batch) == 100:
                moment = NOW - WINDOW + (WINDOW / 2) * (n / stories)
                ingest(store, "stored", batch, moment)
                batch = []
        print(f"  {stories:,} stories stored in {time.perf_counter() - started:.1f} s")
        if database:
            analyze(database)
        on: list[float] = []
        off: list[float] = []
        grouped = 0
        for n in range(MATCHES):
            if n % 2:
                title, lead = words.retold(*told[words.random.randrange(stories)])
            else:
                title, lead = words.report()
            # the same report with grouping on and off, one after the other (which first,
            # in turn), so that the load of the machine weighs on both alike
            pair = [(on, WINDOW, "on"), (off, None, "off")]
            for costs, window, feed in pair if n % 4 < 2 else reversed(pair):
                key = f"{feed}{n}"
                entry = Entry(key, title=title, link=f"https://{feed}.example/{key}", summary=lead)
                start = time.perf_counter()
                created = ingest(store, feed, [NewItem(entry, (match(window),))], NOW)
                costs.append(time.perf_counter() - start)
                if window:
                    grouped += created == 0
        print(f"  grouping on : a matched report {_ms(on)}; {grouped} of {MATCHES} grouped")
        print(f"  grouping off: a matched report {_ms(off)}")
        extra = [with_it - without for with_it, without in zip(on, off, strict=True)]
        median, mean = statistics.median(extra) * 1000, statistics.mean(extra) * 1000
        print(
            f"  grouping: {median:.2f} ms a match (median of the differences, each report"
            f" with grouping on and off; mean {mean:.2f} ms, the larger writes' checkpoints in)"
        )
        quiet = []
        for n in range(20):
            items = [
                NewItem(Entry(f"q{n}-{i}", title=" ".join(words.report()))) for i in range(100)
            ]
            start = time.perf_counter()
            ingest(store, "quiet", items, NOW)
            quiet.append((time.perf_counter() - start) / 100)
        print(f"  items that match nothing: {_ms(quiet)} an item, in batches of 100 (no grouping)")
        store.close()


def analyze(database: str) -> None:
    """Vacuum and analyze the tables just filled, as autovacuum does within a minute or so
    of a daemon's start and then as rows come in: measured before, the lookups are
    planned for empty tables (a scan of all the rule's word counts, 10 ms a match and
    more), and every index entry of a story is checked in the table."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def _ms(costs: list[float]) -> str:
    ordered = sorted(costs)
    median = statistics.median(ordered) * 1000
    mean = statistics.mean(ordered) * 1000
    high = ordered[int(len(ordered) * 0.95)] * 1000
    return f"median {median:.2f} ms, mean {mean:.2f} ms, 95th percentile {high:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument(
        "--postgres", action="store_true", help="also measure on a local PostgreSQL"
    )
    args = parser.parse_args()
    quality()
    speed(args.stories, None)
    if args.postgres:
        if pg.binaries() is None:
            sys.exit("PostgreSQL is not installed: apt-get install postgresql")
        servers = pg.start_server()
        try:
            speed(args.stories, next(servers).new_database())
        finally:
            servers.close()


if __name__ == "__main__":
    main()
