"""Search of the stored items in the rule query language (DESIGN.md section 4).

A search finds what a rule with the same query would match: the rules' ``Matcher`` decides,
on every backend alike. The full-text index only narrows the items down. From the query's
tree come clauses, each a few words of which every item the query matches holds at least one
(``prefilter``); the store hands over the items that satisfy them all, newest first, a page
at a time, and the matcher keeps those it matches. A query with nothing to look up in the
index (only a regular expression, or only NOT) reads the items newest first, up to a bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.query import Near, Node, Not, Or, Regex, Term
from watcher.rules import Match, Matcher, Rule, in_latin
from watcher.state.base import Reports, SearchWord, StoredItem

Clause = frozenset[SearchWord]
"""Words of which a matching item holds at least one."""

MAX_EXAMINED = 100_000
"""Items the matcher reads for one search at most: a query the index cannot narrow down
(``/regex/``), or one whose words are in nearly every item, stops there."""
MAX_CLAUSES = 8
"""Clauses given to the index: the most selective ones; more would narrow little further."""
FIRST_PAGE = 50
LAST_PAGE = 1000
"""Candidates fetched at once: few at first (most searches end on the first page), more and
more while the matcher rejects them."""
SINCE_SLACK = timedelta(hours=1)
"""How far an item's first sight may come before that of an item stored before it (a poll
stamps its items with its start, and a long one writes after a short one that began later):
a search limited to items seen since a time reads this much further back before it stops."""


@dataclass(frozen=True)
class Found:
    item: StoredItem
    match: Match


@dataclass(frozen=True)
class Result:
    found: tuple[Found, ...]
    examined: int
    """Items the matcher read."""
    complete: bool
    """False when the search stopped at ``MAX_EXAMINED`` items before finding enough: older
    items were not read."""


def find(
    store: Reports,
    query: Node,
    limit: int = 20,
    examine: int | None = None,
    *,
    since: datetime | None = None,
    transliterate: bool = False,
) -> Result:
    """The newest ``limit`` stored items the query matches, reading at most ``examine``
    (``MAX_EXAMINED``) of them; with ``since``, only items first seen since then (items are
    read newest first, so the search ends at the first one seen well before); with
    ``transliterate``, as a rule with that option matches (the index holds the Latin
    spelling of words in other scripts too)."""
    examine = MAX_EXAMINED if examine is None else examine
    matcher = Matcher([Rule("search", query, transliterate=transliterate)])
    clauses = prefilter(in_latin(query) if transliterate else query)
    found: list[Found] = []
    examined, before, page = 0, None, FIRST_PAGE
    while len(found) < limit:
        wanted = min(page, examine - examined)
        if wanted <= 0:
            unread = store.search_candidates(clauses, 1, before)
            older = since is not None and all(i.first_seen < since - SINCE_SLACK for _, i in unread)
            return Result(tuple(found), examined, complete=not unread or older)
        batch = store.search_candidates(clauses, wanted, before)
        for item_id, item in batch:
            if since is not None and item.first_seen < since:
                if item.first_seen < since - SINCE_SLACK:
                    return Result(tuple(found), examined, complete=True)
                before = item_id
                continue
            examined += 1
            matches = matcher.match(item.entry.searchable(), item.feed)
            if matches:
                found.append(Found(item, matches[0]))
                if len(found) == limit:
                    break
            before = item_id
        if len(batch) < wanted:
            break
        page = min(page * 2, LAST_PAGE)
    return Result(tuple(found), examined, complete=True)


def prefilter(query: Node) -> tuple[Clause, ...]:
    """Clauses that every item the query matches satisfies, in a field or in its feed's name;
    none when the query can match without any word (a regular expression, a NOT)."""
    kept: list[Clause] = []
    for clause in sorted(set(_clauses(query) or []), key=_cost):
        if not any(_implies(stronger, clause) for stronger in kept):
            kept.append(clause)
    selective = [clause for clause in kept if not any(map(_one_letter_prefix, clause))]
    return tuple((selective or kept)[:MAX_CLAUSES])


def _one_letter_prefix(word: SearchWord) -> bool:
    """A prefix of one letter: nearly every item holds a word starting with it, and the index
    takes 0.3 s to list them in a million items (a word, or a longer prefix, 1 ms)."""
    return word[1] and len(word[0]) < 2


def _clauses(node: Node) -> list[Clause] | None:
    """The clauses a match of the node satisfies; None for no constraint."""
    if isinstance(node, Term):
        *whole, last = node.words
        return [frozenset({(word, False)}) for word in whole] + [frozenset({(last, node.prefix)})]
    if isinstance(node, Regex | Not):
        return None
    if isinstance(node, Or):
        options = [_clauses(child) for child in node.children]
        if any(not option for option in options):
            return None
        return [frozenset().union(*(min(option or [], key=_cost) for option in options))]
    children: Iterable[Node] = (node.left, node.right) if isinstance(node, Near) else node.children
    required = [clause for child in children for clause in _clauses(child) or []]
    return required or None


def _cost(clause: Clause) -> tuple[int, int, int]:
    """How many items a clause lets through, guessed: fewer words first, then fewer prefixes,
    then longer words (long words are rare ones)."""
    prefixes = sum(prefix for _, prefix in clause)
    return (len(clause), prefixes, -min(len(word) for word, _ in clause))


def _implies(clause: Clause, other: Clause) -> bool:
    """Whether an item satisfying ``clause`` satisfies ``other`` too: each of its words is,
    or starts with, a word of ``other``."""
    return all(
        any(
            word.startswith(stem) if stem_prefix else (word == stem and not prefix)
            for stem, stem_prefix in other
        )
        for word, prefix in clause
    )
