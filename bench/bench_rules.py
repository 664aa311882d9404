"""Matching throughput: items per second for N rules on ~1.5 KB items, on one core.

    python3 bench/bench_rules.py [N ...]        (default: 100 1000 10000)

Text is drawn from a 50,000-word vocabulary with Zipf frequencies, as natural language is;
rules use content words (not the 500 commonest) in a realistic mix: single words, phrases,
prefixes with a word, OR groups with an exclusion, NEAR, field scopes and a few regular
expressions. Normalisation (HTML stripping, folding, tokenising) is included, as in the
daemon: the figure is what one polling thread can match.

Then the cost of ``transliterate`` with 1,000 rules: the same items, and the same items
spelled in Cyrillic letters (each Latin letter that has one replaced by the Cyrillic letter
spelled with it), matched by the same rules with the option off and on.
"""

from __future__ import annotations

import itertools
import random
import string
import sys
import time
from dataclasses import replace

from watcher.query import parse
from watcher.rules import Matcher, Rule

VOCABULARY = 50_000
ITEMS = 2_000
REGEXES = 5


def vocabulary(rng: random.Random) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < VOCABULARY:
        found["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 11)))] = None
    return list(found)


def make_items(words: list[str], rng: random.Random) -> list[dict[str, str]]:
    weights = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    items = []
    for _ in range(ITEMS):
        title = " ".join(rng.choices(words, cum_weights=weights, k=10)).capitalize()
        body = " ".join(rng.choices(words, cum_weights=weights, k=215))
        items.append({"title": title, "summary": f"<p>{body}.</p>", "author": "Desk"})
    return items


def make_rules(
    count: int, words: list[str], rng: random.Random, commonest: int = 500
) -> list[Rule]:
    """Rules over the words ranked after ``commonest``: 500 leaves in every content word (a
    dense, worst-case load); 5,000 keeps to names and specific terms, as alert rules are."""
    return [
        Rule(f"r{n}", parse(query))
        for n, query in enumerate(make_queries(count, words, rng, commonest))
    ]


def make_queries(count: int, words: list[str], rng: random.Random, commonest: int) -> list[str]:
    content = words[commonest:]
    queries = []
    for n in range(count):
        a, b, c = rng.sample(content, 3)
        kind = n % 20
        if n < REGEXES:
            query = f"/{a}\\s+{b}/"
        elif kind < 8:
            query = a.capitalize()
        elif kind < 13:
            query = f'"{a} {b}"'
        elif kind < 16:
            query = f"{a[:5]}* {b}"
        elif kind < 18:
            query = f"({a} OR {b}) -{c}"
        elif kind < 19:
            query = f"{a} NEAR/5 {b}"
        else:
            query = f"title:{a}"
        queries.append(query)
    return queries


def main(counts: list[int]) -> None:
    rng = random.Random(42)
    words = vocabulary(rng)
    items = make_items(words, rng)
    size = sum(len(item["title"]) + len(item["summary"]) for item in items) / len(items)
    print(f"{len(items)} items of {size:,.0f} characters; one core")
    for commonest, label in ((500, "any content word"), (5000, "specific terms")):
        print(f"rules on {label} (words ranked after {commonest:,}):")
        for count in counts:
            matcher = Matcher(make_rules(count, words, random.Random(count), commonest))
            for item in items[:200]:  # compile the rules met first, as a running daemon has
                matcher.match(item, "feed")
            start = time.perf_counter()
            matched = sum(len(matcher.match(item, "feed")) for item in items)
            elapsed = time.perf_counter() - start
            print(
                f"  {count:>6} rules: {len(items) / elapsed:>8,.0f} items/s "
                f"({matched / len(items):.2f} matches per item)"
            )


CYRILLIC = str.maketrans(
    "abvgdeziklmnoprstufABVGDEZIKLMNOPRSTUF", "абвгдезиклмнопрстуфАБВГДЕЗИКЛМНОПРСТУФ"
)
OPERATORS = {"AND", "OR", "NOT"}


def _in_cyrillic(query: str) -> str:
    """The query's words in Cyrillic letters; its operators, field names and escapes as
    they were."""
    spelled = []
    for token in query.split(" "):
        if token in OPERATORS or token.startswith("NEAR/"):
            spelled.append(token)
            continue
        field, colon, rest = token.rpartition(":")
        spelled.append(
            field
            + colon
            + rest.translate(CYRILLIC).replace("\\\N{CYRILLIC SMALL LETTER ES}", "\\s")
        )
    return " ".join(spelled)


def transliteration(words: list[str], items: list[dict[str, str]]) -> None:
    """The option's cost: on Latin items, the same rules off and on; on Cyrillic items, the
    rules written in Cyrillic (off) against the same rules in Latin letters (on), which match
    the same items. Best of three runs each, interleaved, for the machine's noise."""
    queries = make_queries(1000, words, random.Random(1000), 5000)
    rules = [Rule(f"r{n}", parse(query)) for n, query in enumerate(queries)]
    latin_rules = [replace(rule, transliterate=True) for rule in rules]
    cyrillic_rules = [Rule(f"r{n}", parse(_in_cyrillic(query))) for n, query in enumerate(queries)]
    cyrillic = [{name: text.translate(CYRILLIC) for name, text in item.items()} for item in items]
    print("transliterate, 1000 rules on specific terms (best of 3):")
    for label, corpus, off_rules in (
        ("Latin items", items, rules),
        ("Cyrillic items", cyrillic, cyrillic_rules),
    ):
        matchers = [Matcher(off_rules), Matcher(latin_rules)]
        for matcher in matchers:
            for item in corpus[:200]:
                matcher.match(item, "feed")
        best = [float("inf"), float("inf")]
        matched = [0, 0]
        for _ in range(3):
            for n, matcher in enumerate(matchers):
                start = time.perf_counter()
                matched[n] = sum(len(matcher.match(item, "feed")) for item in corpus)
                best[n] = min(best[n], time.perf_counter() - start)
        print(
            f"  {label:>14}: off {len(corpus) / best[0]:>8,.0f} items/s"
            f" ({matched[0] / len(corpus):.2f} matches per item), on"
            f" {len(corpus) / best[1]:>8,.0f} items/s ({matched[1] / len(corpus):.2f}):"
            f" {best[1] / best[0] - 1:+.0%} time"
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100, 1000, 10000])
    rng = random.Random(42)
    corpus_words = vocabulary(rng)
    transliteration(corpus_words, make_items(corpus_words, rng))
