"""Matching throughput: items per second for N rules on ~1.5 KB items, one core.

    python3 bench/bench_rules.py [N ...]

Normalisation (HTML stripping, folding, tokenising) is included, as in the daemon.
"""

from __future__ import annotations

import random
import string
import sys
import time

from watcher.query import parse
from watcher.rules import Matcher, Rule

WORDS = [
    "".join(random.Random(i).choices(string.ascii_lowercase, k=random.Random(i).randint(3, 10)))
    for i in range(20_000)
]


def make_rules(count: int, rng: random.Random) -> list[Rule]:
    rules = []
    for n in range(count):
        kind = n % 4
        a, b, c = rng.sample(WORDS, 3)
        query = {0: a, 1: f'"{a} {b}"', 2: f"{a[:4]}* {b}", 3: f"({a} OR {b}) -{c}"}[kind]
        rules.append(Rule(f"r{n}", parse(query)))
    return rules


def make_items(count: int, rng: random.Random) -> list[dict[str, str]]:
    items = []
    for _ in range(count):
        body = " ".join(rng.choices(WORDS[:5000], k=220))
        items.append(
            {"title": " ".join(rng.choices(WORDS[:5000], k=10)), "summary": f"<p>{body}</p>"}
        )
    return items


def main(counts: list[int]) -> None:
    rng = random.Random(42)
    items = make_items(500, rng)
    size = sum(len(i["title"]) + len(i["summary"]) for i in items) / len(items)
    print(f"items of {size:,.0f} characters")
    for count in counts:
        matcher = Matcher(make_rules(count, rng))
        start = time.perf_counter()
        matched = sum(len(matcher.match(item, "feed")) for item in items)
        elapsed = time.perf_counter() - start
        print(f"{count:>6} rules: {len(items) / elapsed:>9,.0f} items/s ({matched} matches)")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 100, 1000])
