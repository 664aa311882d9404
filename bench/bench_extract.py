"""Article extraction: trafilatura against readability-lxml on the test pages.

    python3 bench/bench_extract.py [ROUNDS]      (default: 20)

Each page of ``tests/data/articles`` (a news page with its navigation, "most read" lists,
cookie banners, related links, comments and footer) has its main text beside it (``.txt``).
For each library and page: precision (the share of the extracted words that are the
article's) and recall (the share of the article's words extracted), over words as the
rules' matcher sees them, counted with repeats; the extra words, those of the page outside
the article that reached the text (a headline or a credit line is harmless; a name from a
"most read" list would make a rule match an article that does not mention it); and the
time per page, the best of ROUNDS runs.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura
from readability import Document

from watcher.text import plain, words

PAGES = Path(__file__).resolve().parent.parent / "tests" / "data" / "articles"


def with_trafilatura(page: str) -> str:
    return trafilatura.extract(page, include_comments=False, include_tables=True) or ""


def with_trafilatura_precise(page: str) -> str:
    return (
        trafilatura.extract(page, include_comments=False, include_tables=True, favor_precision=True)
        or ""
    )


def with_readability(page: str) -> str:
    return plain(Document(page).summary(html_partial=True))


def with_watcher(page: str) -> str:
    from watcher.article import extract

    return extract(page)


EXTRACTORS: dict[str, Callable[[str], str]] = {
    "trafilatura": with_trafilatura,
    "trafilatura (favor_precision)": with_trafilatura_precise,
    "readability-lxml": with_readability,
}


def score(found: str, expected: str) -> tuple[float, float]:
    got, want = Counter(words(found)), Counter(words(expected))
    common = sum((got & want).values())
    precision = common / sum(got.values()) if got else 0.0
    recall = common / sum(want.values()) if want else 1.0
    return precision, recall


def extra_words(found: str, expected: str, page: str) -> list[str]:
    """Words of the page outside the article that were extracted (words of three letters
    or fewer left out)."""
    article = set(words(expected))
    boilerplate = set(words(plain(page))) - article
    return sorted(w for w in set(words(found)) & boilerplate if len(w) > 3)


def best_time(extract: Callable[[str], str], page: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        extract(page)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    pages = sorted(PAGES.glob("*.html"))
    extractors = dict(EXTRACTORS)
    try:
        import watcher.article  # noqa: F401

        extractors["watcher.article.extract"] = with_watcher
    except ImportError:
        pass
    print(f"{len(pages)} pages, best of {rounds} runs each\n")
    for name, extract in extractors.items():
        print(name)
        totals: list[tuple[float, float, float]] = []
        for path in pages:
            page = path.read_text(encoding="utf-8")
            expected = path.with_suffix(".txt").read_text(encoding="utf-8")
            found = extract(page)
            precision, recall = score(found, expected)
            seconds = best_time(extract, page, rounds)
            totals.append((precision, recall, seconds))
            extra = extra_words(found, expected, page)
            shown = ", ".join(extra[:6]) + (" ..." if len(extra) > 6 else "")
            print(
                f"  {path.stem:22} precision {precision:6.1%}  recall {recall:6.1%}"
                f"  {seconds * 1000:6.2f} ms  extra words: {shown or '-'}"
            )
        count = len(totals)
        print(
            f"  {'MEAN':22} precision {sum(t[0] for t in totals) / count:6.1%}"
            f"  recall {sum(t[1] for t in totals) / count:6.1%}"
            f"  {sum(t[2] for t in totals) / count * 1000:6.2f} ms\n"
        )


if __name__ == "__main__":
    main()
