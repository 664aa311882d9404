"""The story corpus (tests/data/stories*.yaml) replayed through a real store, and the
figures of the grouping: shared by tests/test_stories.py and bench/bench_stories.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path

import yaml

from watcher.models import Entry
from watcher.query import parse
from watcher.rules import Matcher, Rule
from watcher.state import NewItem, Store

DATA = Path(__file__).parent / "data"
TUNING = DATA / "stories.yaml"
HELD_OUT = DATA / "stories-heldout.yaml"
HELD_OUT_2 = DATA / "stories-heldout2.yaml"
HELD_OUT_3 = DATA / "stories-heldout3.yaml"
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Report:
    story: str
    """The story it tells: the truth."""
    outlet: str
    at: datetime
    title: str
    lead: str

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.outlet} {self.title}".encode()).hexdigest()[:12]

    def entry(self) -> Entry:
        return Entry(
            self.key,
            title=self.title,
            link=f"https://{self.outlet}.example/{self.key}",
            summary=self.lead,
            published=self.at,
        )


@dataclass(frozen=True)
class Corpus:
    rules: tuple[Rule, ...]
    reports: tuple[Report, ...]
    """In the order they appear (by time)."""

    def __add__(self, other: Corpus) -> Corpus:
        reports = sorted((*self.reports, *other.reports), key=lambda report: report.at)
        return Corpus(self.rules, tuple(reports))


def load(path: Path = TUNING, window: timedelta | None = WINDOW) -> Corpus:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = tuple(
        Rule(name, parse(query), notify=("hook",), stories=window)
        for name, query in data["rules"].items()
    )
    reports = [
        Report(story, r["outlet"], _moment(r["at"]), r["title"], r["lead"])
        for story, told in data["stories"].items()
        for r in told
    ]
    return Corpus(rules, tuple(sorted(reports, key=lambda report: report.at)))


def _moment(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Grouping:
    """Where one report went for one rule."""

    rule: str
    report: Report
    story: int
    alerted: bool


def replay(store: Store, corpus: Corpus) -> list[Grouping]:
    """Ingest each report, in time order, as a new item of its outlet's feed, matched by
    the corpus's rules; return where each match went."""
    matcher = Matcher(corpus.rules)
    for report in corpus.reports:
        entry = report.entry()
        matches = tuple(matcher.match(entry.searchable(), report.outlet))
        store.ingest(
            report.outlet,
            f"https://{report.outlet}.example/feed",
            etag=None,
            last_modified=None,
            present=[entry.key],
            new_items=[NewItem(entry, matches)],
            now=report.at,
        )
    by_key = {(report.outlet, report.key): report for report in corpus.reports}
    start = min(report.at for report in corpus.reports) - timedelta(days=1)
    found = []
    for story in store.stories(start, limit=100_000):
        for index, match in enumerate(story.reports):
            report = by_key[(match.item.feed, match.item.entry.key)]
            found.append(Grouping(story.rule, report, story.id, alerted=index == 0))
    return found


@dataclass(frozen=True)
class Figures:
    matches: int
    alerts: int
    pairs: int
    """(rule, story) pairs of the truth."""
    lost: int
    """(rule, story) pairs none of whose reports alerted: merged into another story."""
    precision: float
    recall: float
    wrong_merges: tuple[tuple[str, str, str], ...]
    """(rule, story, story) of every two stories grouped together."""

    @property
    def suppressed(self) -> float:
        """The share of repeat reports (all but one per (rule, story)) that sent nothing."""
        repeats = self.matches - self.pairs
        return (self.matches - self.alerts) / repeats if repeats else 1.0


def figures(groupings: Sequence[Grouping]) -> Figures:
    true_positive = false_positive = false_negative = 0
    wrong: set[tuple[str, str, str]] = set()
    for first, second in combinations(groupings, 2):
        if first.rule != second.rule:
            continue
        truth = first.report.story == second.report.story
        told = first.story == second.story
        true_positive += truth and told
        false_positive += told and not truth
        false_negative += truth and not told
        if told and not truth:
            pair = sorted((first.report.story, second.report.story))
            wrong.add((first.rule, pair[0], pair[1]))
    pairs = {(g.rule, g.report.story) for g in groupings}
    alerted = {(g.rule, g.report.story) for g in groupings if g.alerted}
    return Figures(
        matches=len(groupings),
        alerts=sum(g.alerted for g in groupings),
        pairs=len(pairs),
        lost=len(pairs - alerted),
        precision=_ratio(true_positive, true_positive + false_positive),
        recall=_ratio(true_positive, true_positive + false_negative),
        wrong_merges=tuple(sorted(wrong)),
    )


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def stories_of(groupings: Iterable[Grouping]) -> dict[tuple[str, int], list[str]]:
    """(rule, story id) -> the true stories of its reports, for reading a result."""
    found: dict[tuple[str, int], list[str]] = {}
    for g in groupings:
        found.setdefault((g.rule, g.story), []).append(g.report.story)
    return found
