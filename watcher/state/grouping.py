"""Recording matches in stories, inside the ingest's transaction (the SQL of
``watcher.stories``).

Every match belongs to a story of its rule: the first report opens it and alerts, a later
report of the same story within the rule's window joins it and sends nothing. The caller
holds a lock scoped to the rule (PostgreSQL: an advisory lock; SQLite writes one at a time),
so two processes ingesting two reports of one story decide one after the other, and every
table written here for a rule (its stories, their keys, its word counts) is written by one
transaction at a time.

- ``stories``: the rule, first and last seen, the number of reports.
- ``story_keys``: (rule, word, opened, story) for the informative words of a story's
  reports (but those already in too many of the rule's stories to be looked up): the
  index a report's open stories are looked up by, by its rare words, never a scan of the
  rule's stories.
- ``story_words``: per rule, word and day, how many stories opened that day hold the word
  (the word ``''``: how many stories opened): the IDF of ``watcher.stories.Weights``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from watcher import stories
from watcher.state.base import from_timestamp, timestamp

if TYPE_CHECKING:
    from watcher.state.sql import Tx

COUNTED = timedelta(days=7)
"""The period whose stories give a word its weight: recent, and long enough to count."""
CANDIDATES = 5
"""Open stories of the rule a report is compared with at most: those sharing most keys."""
KEY_SHARE = 500
"""A word in more than one in this many of the rule's recent stories (and in more than
``KEY_FLOOR``) is not looked up: it would bring back a share of all the stories (each
looked-up word reads at most this share), and a report joins a story through rarer words
it shares."""
KEY_FLOOR = 4
KEYS = 8
"""Words a report's stories are looked up by at most: its rarest (in the fewest stories)."""
TOTAL = ""
"""The word of ``story_words`` that counts the stories themselves."""


@dataclass(frozen=True)
class Grouped:
    """The open story a report tells again (it joins it, and sends nothing)."""

    story: int
    verdict: stories.Verdict
    """Why it joins the story (``Verdict.explain``)."""
    held: frozenset[str]
    """The words the story's reports hold (``held_words``)."""


@dataclass(frozen=True)
class Earlier:
    """The rule's earlier match of the same link (another item: another feed, or the same
    feed under another key): the same article alerts once."""

    match: int
    story: int
    also_in: str | None
    feed: str


EARLIER = """
SELECT m.id, m.story_id, m.also_in, i.feed FROM matches m JOIN items i ON i.id = m.item_id
WHERE i.canonical = ? AND m.rule = ? AND m.story_id IS NOT NULL ORDER BY m.id LIMIT 1
"""

LOOKUP = f"""
WITH counts AS (
    SELECT word, sum(stories) AS held FROM story_words
    WHERE rule = ? AND day >= ? AND word IN (SELECT value FROM {{each}}) GROUP BY word),
keys AS (
    SELECT word FROM counts WHERE word <> '' AND (held <= ?
        OR held * ? <= (SELECT coalesce(sum(held), 0) FROM counts WHERE word = ''))
    ORDER BY held, word LIMIT ?),
candidates AS (
    SELECT story_id, count(*) AS shared FROM story_keys
    WHERE rule = ? AND opened >= ? AND word IN (SELECT word FROM keys)
    GROUP BY story_id ORDER BY shared DESC, story_id LIMIT ?),
earlier AS ({EARLIER})
SELECT 'count', word, held, NULL, NULL, NULL, NULL FROM counts
UNION ALL
SELECT 'report', NULL, c.shared, c.story_id, m.id, m.report, m.detected_at
FROM candidates c LEFT JOIN matches m ON m.story_id = c.story_id
UNION ALL
SELECT 'earlier', feed, NULL, story_id, id, also_in, NULL FROM earlier
"""
"""In one round trip: how many of the rule's recent stories hold each of the report's
words (``TOTAL``: how many stories there are), the open stories that share most of its
keys, with their reports, and the earlier match of its link (``Earlier``). A key is a
word that recent stories hold, but not too many of them (``most_held``, written out
here). Each row says which of the three it is."""


class Lookup(NamedTuple):
    earlier: Earlier | None
    weights: stories.Weights
    grouped: Grouped | None


def find(
    tx: Tx,
    rule: str,
    report: stories.Report,
    ignore: Collection[str],
    now: datetime,
    window: timedelta,
    canonical: str | None = None,
) -> Lookup:
    """The rule's earlier match of the report's link (``canonical``), if there is one; else
    the open story of the rule (opened within ``window``) that the report tells again, if
    one is; and the weights it was decided with."""
    words = sorted(report.words.keys() - set(ignore) - stories.COMMON)
    rows = tx.execute(
        LOOKUP.format(each=tx.each),
        [
            *(rule, _day(now - COUNTED), tx.listed([TOTAL, *words])),
            *(KEY_FLOOR, KEY_SHARE, KEYS),
            *(rule, timestamp(now - window), CANDIDATES),
            *(canonical, rule),
        ],
    ).fetchall()
    counts: dict[str, int] = {}
    found: list[tuple[int, int, int, str, str]] = []
    earlier: Earlier | None = None
    for kind, word, number, story, match, text, detected in rows:
        if kind == "count":
            counts[word] = int(number)
        elif kind == "earlier":
            earlier = Earlier(int(match), int(story), text, word)
        elif match is not None:
            found.append((-int(number), int(story), int(match), text, detected))
    weighed = stories.Weights(counts.pop(TOTAL, 0), counts)
    if earlier is not None:
        return Lookup(earlier, weighed, None)
    reports: dict[int, list[tuple[stories.Report, datetime]]] = {}
    for _, story, _, text, detected in sorted(found):
        seen = from_timestamp(detected) or now
        reports.setdefault(story, []).append((stories.Report.decode(text), seen))
    candidates = [stories.Candidate(story, tuple(told)) for story, told in reports.items()]
    chosen = stories.choose(report, candidates, weighed, ignore, now, window)
    if chosen is None:
        return Lookup(None, weighed, None)
    story, verdict = chosen
    held = _held(told for told, _ in reports[story])
    return Lookup(None, weighed, Grouped(story, verdict, held))


def earlier(tx: Tx, rule: str, canonical: str) -> Earlier | None:
    """The rule's earlier match of a link, looked up alone (for a rule that does not group
    reports, which needs nothing else of ``find``)."""
    row = tx.execute(EARLIER, [canonical, rule]).fetchone()
    return None if row is None else Earlier(int(row[0]), int(row[1]), row[2], row[3])


def also_in(tx: Tx, earlier: Earlier, feed: str) -> int:
    """Add a feed to the earlier match's ``also_in`` (unless it is that match's own feed or
    already there); return the earlier match's story."""
    feeds = json.loads(earlier.also_in or "[]")
    if feed != earlier.feed and feed not in feeds:
        feeds.append(feed)
        tx.execute(
            "UPDATE matches SET also_in = ? WHERE id = ?",
            [json.dumps(feeds, ensure_ascii=False), earlier.match],
        )
    return earlier.story


def most_held(weighed: stories.Weights) -> int:
    """The most stories a word may be in to be looked up (``KEY_SHARE``)."""
    return max(KEY_FLOOR, weighed.stories // KEY_SHARE)


def open_story(tx: Tx, rule: str, now: datetime) -> int:
    """A new story of the rule, of one report (its match is recorded next)."""
    stamp = timestamp(now)
    row = tx.execute(
        "INSERT INTO stories (rule, first_seen, last_seen, reports) VALUES (?, ?, ?, 1)"
        " RETURNING id",
        [rule, stamp, stamp],
    ).fetchone()
    return int(row[0])


def index_story(
    tx: Tx,
    story: int,
    rule: str,
    report: stories.Report,
    now: datetime,
    weighed: stories.Weights | None = None,
) -> None:
    """Index a story just opened by its report's words, and count it in the rule's
    stories and word counts (for a rule that groups reports). A word in too many of the
    rule's stories to be looked up (by ``weighed``, the counts it was decided with) is
    counted, not indexed: fewer pages written for nothing."""
    words = sorted(_indexable(report))
    keys = words
    if weighed is not None:
        most = most_held(weighed)
        keys = [word for word in words if weighed.holding.get(word, 0) <= most]
    _index(tx, story, rule, words, keys, opened=True)


def add_report(
    tx: Tx,
    story: int,
    rule: str,
    report: stories.Report,
    now: datetime,
    *,
    indexed: bool,
    held: Collection[str] = (),
) -> None:
    """Count a later report in its story; with ``indexed`` (the rule groups reports),
    index the words the story did not hold yet (``held``: the words its reports hold, read
    before the report's match was recorded) and count them in the rule's word counts."""
    words = sorted(_indexable(report) - set(held)) if indexed else []
    tx.execute(
        "UPDATE stories SET reports = reports + 1, last_seen = ? WHERE id = ?",
        [timestamp(now), story],
    )
    _index(tx, story, rule, words, words, opened=False)


def held_words(tx: Tx, story: int) -> frozenset[str]:
    """The words a story's reports hold, but those of any story (which are not counted)."""
    rows = tx.execute("SELECT report FROM matches WHERE story_id = ?", [story]).fetchall()
    return _held(stories.Report.decode(text) for (text,) in rows)


def _held(reports: Iterable[stories.Report]) -> frozenset[str]:
    return frozenset(word for report in reports for word in report.words) - stories.COMMON


def _indexable(report: stories.Report) -> set[str]:
    """The words a story is looked up by and counted under: all but those of any story."""
    return {word for word in report.words if word not in stories.COMMON}


def _index(
    tx: Tx,
    story: int,
    rule: str,
    words: list[str],
    keys: list[str],
    *,
    opened: bool,
) -> None:
    """Look the story up by ``keys`` from now on, and count ``words`` as its words, under
    the time and day the story opened: one statement each (one round trip to a PostgreSQL
    server, not one a word), whose text is the same for any number of words (``Tx.each``)."""
    if keys:
        tx.execute(
            "INSERT INTO story_keys (rule, word, opened, story_id)"
            f" SELECT ?, value, s.first_seen, s.id FROM stories s, {tx.each} WHERE s.id = ?",
            [rule, tx.listed(keys), story],
        )
    counted = ([TOTAL] if opened else []) + words
    if counted:
        tx.execute(
            "INSERT INTO story_words (rule, word, day, stories)"
            f" SELECT ?, value, substr(s.first_seen, 1, 10), 1 FROM stories s, {tx.each}"
            " WHERE s.id = ?"
            " ON CONFLICT (rule, word, day) DO UPDATE SET stories = story_words.stories + 1",
            [rule, tx.listed(counted), story],
        )


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def prune(tx: Tx, before: datetime) -> None:
    """Forget stories none of whose reports is left, and the keys and word counts of the
    stories opened before a time (older than any window)."""
    tx.execute("DELETE FROM story_keys WHERE opened < ?", [timestamp(before)])
    tx.execute("DELETE FROM story_words WHERE day < ?", [_day(before)])
    tx.execute(
        "DELETE FROM story_keys WHERE story_id IN (SELECT s.id FROM stories s WHERE NOT EXISTS"
        " (SELECT 1 FROM matches m WHERE m.story_id = s.id))"
    )
    tx.execute(
        "DELETE FROM stories WHERE NOT EXISTS (SELECT 1 FROM matches m WHERE m.story_id"
        " = stories.id)"
    )
