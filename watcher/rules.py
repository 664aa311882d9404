"""Rules compiled into one matcher, and matching of entries against them.

An entry is normalised and tokenised once (``Document``). Every term of every rule (word,
phrase or prefix) is a key of one Aho-Corasick automaton, which reads the entry's words in
one pass, in C, and tells which terms occur and where. The rules that need one of the terms
found are the candidates; evaluating a candidate is then looking its terms up in what was
found. The cost grows with the words an entry holds, not with the number of rules.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cached_property
from typing import Any, NamedTuple

import ahocorasick_rs
import re2

from watcher.query import DEFAULT_FIELDS, REGEX_OPTIONS, And, Near, Node, Not, Or, Regex, Term
from watcher.text import MAX_FIELD, latin_words, strip_html, words

MAX_HITS = 50
"""Hits kept per match: enough to highlight, bounded for a text that repeats a word."""


@dataclass(frozen=True)
class Rule:
    name: str
    query: Node
    feeds: frozenset[str] | None = None
    """Feed names, and ``tag:x`` for feeds tagged x, the rule is scoped to; None for every feed."""
    notify: tuple[str, ...] = ()
    transliterate: bool = False
    """Whether words in other scripts also match through their Latin spelling."""
    stories: timedelta | None = None
    """Reports of one story within this window alert once; None: every report alerts."""

    def applies_to(self, feed_name: str, feed_tags: Iterable[str]) -> bool:
        if self.feeds is None:
            return True
        return feed_name in self.feeds or any(f"tag:{tag}" in self.feeds for tag in feed_tags)


class Hit(NamedTuple):
    """One term of a rule found in one field; ``words`` are the normalised words found.

    Hits and matches are named tuples, not dataclasses: an entry can make dozens, and a
    tuple is built several times faster.
    """

    term: str
    field: str
    words: tuple[str, ...]


class Match(NamedTuple):
    rule: str
    terms: tuple[str, ...]
    """The rule's terms that were found, as written in the rule."""
    notify: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()
    stories: timedelta | None = None
    """The rule's story window (``Rule.stories``)."""

    @property
    def words(self) -> frozenset[str]:
        """Every normalised word that made the match, for highlighting."""
        return frozenset(word for hit in self.hits for word in hit.words)


@dataclass(frozen=True)
class _Span:
    field: str
    start: int
    end: int
    hits: tuple[Hit, ...]


class Document:
    """An entry's fields (HTML allowed) as plain text and normalised words; of each field,
    the first ``MAX_FIELD`` characters (parsing keeps no more of a new item, but an item
    stored earlier may hold more)."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._plain = {name: strip_html(text[:MAX_FIELD]) for name, text in fields.items() if text}
        self.found: dict[int, list[int]] = {}
        """Set by the matcher: where (offsets in ``joined``) each term key was found."""
        self._tokens: dict[str, list[str]] | None = None
        self._latin: Document | None = None
        """The Latin view when it is another document; None when it is this one, or not
        made yet (``_latin_made``). Never this document itself: a document holding itself is
        a reference cycle, which only the garbage collector frees, and slows matching."""
        self._latin_made = False

    @property
    def tokens(self) -> dict[str, list[str]]:
        """Each field's normalised words (made on first use: rules that all transliterate
        read only the Latin spelling)."""
        if self._tokens is None:
            self._tokens = {name: words(text) for name, text in self._plain.items()}
        return self._tokens

    @cached_property
    def _layout(self) -> tuple[str, list[int], list[str]]:
        parts = [" " + " ".join(tokens) + " " for tokens in self.tokens.values()]
        starts, offset = [], 0
        for part in parts:
            starts.append(offset)
            offset += len(part)
        return "".join(parts), starts, list(self.tokens)

    @property
    def joined(self) -> str:
        """Every field's words between spaces, the fields one after the other: what the
        automaton reads. A field ends and the next starts with a space, so no phrase can be
        found across two fields."""
        return self._layout[0]

    @property
    def field_starts(self) -> tuple[list[int], list[str]]:
        """Where each field's words begin in ``joined``, and the fields' names."""
        return self._layout[1], self._layout[2]

    def positions(self, field: str, word: str) -> list[int]:
        tokens = self.tokens.get(field, [])
        found: list[int] = []
        try:
            while True:
                found.append(tokens.index(word, found[-1] + 1 if found else 0))
        except ValueError:
            return found

    def plain_text(self) -> str:
        """The plain text of every field, one field a line."""
        return "\n".join(self._plain.values())

    def plain(self, field: str) -> str:
        return self._plain.get(field, "")

    @property
    def latin(self) -> Document:
        """The document with words of other scripts spelled in Latin letters, which the
        rules with ``transliterate`` read: itself when it has no such word. (Properties
        set once by hand: ``cached_property`` takes a lock at each first use.)"""
        if not self._latin_made:
            ascii_only = all(map(str.isascii, self._plain.values()))
            self._latin = None if ascii_only else self._in_latin()
            self._latin_made = True
        return self._latin or self

    def _in_latin(self) -> Document | None:
        spelled = {name: latin_words(text) for name, text in self._plain.items()}
        if all(spelled_words is None for spelled_words in spelled.values()):
            return None
        view = Document({})
        view._plain = self._plain
        view._tokens = {
            name: spelled_words if spelled_words is not None else words(self._plain[name])
            for name, spelled_words in spelled.items()
        }
        view._latin_made = True
        return view


def _fields(field: str | None) -> tuple[str, ...]:
    return DEFAULT_FIELDS if field is None else (field,)


Evaluator = Callable[[Document], list[Hit] | None]
"""A compiled query: the hits of its positive terms when it matches (empty for a match made
by a NOT alone), None when it does not."""


def compile_query(node: Node, keys: Mapping[str, int]) -> Evaluator:
    """The tree as nested closures over the automaton's findings (``keys`` numbers each
    term's key): matching then costs no dispatch on node types and no text search."""
    if isinstance(node, Term):
        return functools.partial(_term_hits, node, keys[term_key(node)])
    if isinstance(node, Regex):
        return functools.partial(_regex_hits, node)
    if isinstance(node, Near):
        return functools.partial(_near_hits, node)
    if isinstance(node, Not):
        child = compile_query(node.child, keys)
        return lambda document: None if child(document) is not None else []
    children = [compile_query(child, keys) for child in node.children]
    return functools.partial(_all_of if isinstance(node, And) else _any_of, children)


def _all_of(children: list[Evaluator], document: Document) -> list[Hit] | None:
    hits: list[Hit] = []
    for child in children:
        found = child(document)
        if found is None:
            return None
        hits += found
    return hits


def _any_of(children: list[Evaluator], document: Document) -> list[Hit] | None:
    hits: list[Hit] | None = None
    for child in children:
        found = child(document)
        if found is not None:
            hits = found if hits is None else hits + found
    return hits


def term_key(term: Term) -> str:
    """The term as the automaton finds it in ``Document.joined``: `` a b `` for the words a
    b adjacent, `` a b`` (no closing space) for a then a word starting with b."""
    return " " + " ".join(term.words) + ("" if term.prefix else " ")


def _term_hits(term: Term, key: int, document: Document) -> list[Hit] | None:
    """The term's hits, one per field it was found in, from where the automaton found it."""
    ends = document.found.get(key)
    if not ends:
        return None
    starts, names = document.field_starts
    wanted = DEFAULT_FIELDS if term.field is None else (term.field,)
    if not term.prefix:
        fields = dict.fromkeys(names[bisect.bisect_right(starts, end) - 1] for end in ends)
        return [Hit(term.text, field, term.words) for field in fields if field in wanted] or None
    joined = document.joined
    by_field: dict[str, dict[str, None]] = {}
    for end in ends:
        field = names[bisect.bisect_right(starts, end) - 1]
        if field in wanted:
            last = joined[joined.rindex(" ", 0, end) + 1 : joined.index(" ", end)]
            by_field.setdefault(field, {})[last] = None
    stems = term.words[:-1]
    return [Hit(term.text, field, (*stems, *lasts)) for field, lasts in by_field.items()] or None


def _near_hits(node: Near, document: Document) -> list[Hit] | None:
    hits = [hit for span in _spans(node, document) for hit in span.hits]
    return hits or None


def _regex_hits(node: Regex, document: Document) -> list[Hit] | None:
    hits = []
    for field in _fields(node.field):
        text = document.plain(field)
        found = node.compiled.search(text) if text else None
        if found:
            hits.append(Hit(f"/{node.pattern}/", field, tuple(words(found.group(0)))))
    return hits or None


def _term_spans(term: Term, document: Document) -> list[_Span]:
    """Every place a word, prefix or phrase occurs, with its word positions (for NEAR)."""
    spans = []
    first, *rest = term.words
    size = len(term.words)
    for field in _fields(term.field):
        tokens = document.tokens.get(field)
        if not tokens:
            continue
        if rest or not term.prefix:
            starts = document.positions(field, first)
        else:
            starts = [i for i, word in enumerate(tokens) if word.startswith(first)]
        for start in starts:
            found = tokens[start : start + size]
            if len(found) < size or found[1:-1] != rest[:-1]:
                continue
            last = found[-1]
            if last == term.words[-1] or (term.prefix and last.startswith(term.words[-1])):
                spans.append(
                    _Span(field, start, start + size, (Hit(term.text, field, tuple(found)),))
                )
                if len(spans) >= MAX_HITS:
                    return spans
    return spans


def _spans(node: Node, document: Document) -> list[_Span]:
    if isinstance(node, Term):
        return _term_spans(node, document)
    if isinstance(node, Or):
        return [span for child in node.children for span in _spans(child, document)]
    assert isinstance(node, Near), "the parser only lets terms, ORs and NEARs into a NEAR"
    found = []
    rights = _spans(node.right, document)
    for left in _spans(node.left, document):
        for right in rights:
            if left.field != right.field:
                continue
            if left.end <= right.start:
                gap = right.start - left.end + 1
            elif right.end <= left.start:
                gap = left.start - right.end + 1
            else:
                continue  # one word cannot stand on both sides
            if gap <= node.distance:
                start, end = min(left.start, right.start), max(left.end, right.end)
                found.append(_Span(left.field, start, end, left.hits + right.hits))
                if len(found) >= MAX_HITS:
                    return found
    return found


Anchors = frozenset[tuple[str, str]]
"""("term", key): the term with that key; ("regex", r): text the expression r finds."""


def _anchors(node: Node) -> Anchors | None:
    """What the entry must hold at least one of for the node to match; None when the node can
    match without anything indexable (a NOT)."""
    if isinstance(node, Term):
        return frozenset({("term", term_key(node))})
    if isinstance(node, Regex):
        return frozenset({("regex", node.pattern)})
    if isinstance(node, Not):
        return None
    if isinstance(node, Or):
        options = [_anchors(child) for child in node.children]
        if any(option is None for option in options):
            return None
        return frozenset().union(*options)  # type: ignore[arg-type]
    children = (node.left, node.right) if isinstance(node, Near) else node.children
    required = [found for child in children if (found := _anchors(child)) is not None]
    if not required:
        return None
    return min(required, key=lambda found: (len(found), -sum(len(key) for _, key in found)))


def in_latin(node: Node) -> Node:
    """The query with its words spelled as ``Document.latin`` spells a document's: a query
    written in Latin letters is unchanged, ``Песков`` becomes ``peskov``."""
    if isinstance(node, Term):
        spelled = latin_words(node.text.rstrip("*") if node.prefix else node.text)
        return node if not spelled else replace(node, words=tuple(spelled))
    if isinstance(node, Regex):
        return node
    if isinstance(node, Not):
        return Not(in_latin(node.child))
    if isinstance(node, Near):
        return Near(in_latin(node.left), in_latin(node.right), node.distance)
    kind = type(node)
    return kind(tuple(in_latin(child) for child in node.children))


def _leaves(node: Node) -> Iterable[Term | Regex]:
    """Every term and regular expression of a tree, under NOT too."""
    if isinstance(node, Term | Regex):
        yield node
    elif isinstance(node, Not):
        yield from _leaves(node.child)
    elif isinstance(node, Near):
        yield from _leaves(node.left)
        yield from _leaves(node.right)
    else:
        for child in node.children:
            yield from _leaves(child)


class Matcher:
    """Every rule of a config, compiled once: one automaton for all their terms, one RE2 set
    for all their regular expressions, and each rule's evaluator (built on first use: most
    rules of a large set are rarely candidates)."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._queries = [
            in_latin(rule.query) if rule.transliterate else rule.query for rule in self.rules
        ]
        """Each rule's query as it is matched: in Latin letters for ``transliterate``."""
        self._latin = frozenset(i for i, rule in enumerate(self.rules) if rule.transliterate)
        self._keys: dict[str, int] = {}
        for query in self._queries:
            for leaf in _leaves(query):
                if isinstance(leaf, Term):
                    self._keys.setdefault(term_key(leaf), len(self._keys))
        self._key_rules: list[list[int]] = [[] for _ in self._keys]
        self._always: list[int] = []
        regexes: dict[str, list[int]] = {}
        for index, query in enumerate(self._queries):
            anchors = _anchors(query)
            if anchors is None:
                self._always.append(index)
                continue
            for kind, key in anchors:
                if kind == "regex":
                    regexes.setdefault(key, []).append(index)
                else:
                    self._key_rules[self._keys[key]].append(index)
        scoped = {node.field for query in self._queries for node in _leaves(query) if node.field}
        self._fields = (*DEFAULT_FIELDS, *sorted(scoped - set(DEFAULT_FIELDS)))
        """The fields some rule reads: the link and the feed's name are only read on demand."""
        self._automaton = _automaton(list(self._keys))
        self._regex_rules = list(regexes.values())
        self._regex_set = _regex_set(list(regexes)) if regexes else None
        self._evaluators: list[Evaluator | None] = [None] * len(self.rules)

    def candidates(self, document: Document) -> list[int]:
        """Indexes of the rules that may match, in rule order; records what was found (in
        the document, and in its Latin spelling for the rules with ``transliterate``)."""
        found = set(self._always)
        if self._automaton is not None:
            latin = document.latin if self._latin else document
            self._find(latin if len(self._latin) == len(self.rules) else document)
            if latin is document:
                found.update(*[self._key_rules[key] for key in document.found])
            elif len(self._latin) == len(self.rules):
                found.update(*[self._key_rules[key] for key in latin.found])
            else:
                self._find(latin)
                found.update(
                    index
                    for key in document.found
                    for index in self._key_rules[key]
                    if index not in self._latin
                )
                found.update(
                    index
                    for key in latin.found
                    for index in self._key_rules[key]
                    if index in self._latin
                )
        if self._regex_set is not None:
            for pattern in self._regex_set.Match(document.plain_text()) or ():
                found.update(self._regex_rules[pattern])
        return sorted(found)

    def _find(self, document: Document) -> None:
        places = document.found
        for key, _, end in self._automaton.find_matches_as_indexes(
            document.joined, overlapping=True
        ):
            places.setdefault(key, []).append(end - 1)

    def match(
        self, fields: Mapping[str, str], feed_name: str, feed_tags: Iterable[str] = ()
    ) -> list[Match]:
        """The rules matching an entry, given its fields (HTML allowed) and its feed."""
        available = {**fields, "feed": feed_name}
        document = Document({name: available.get(name, "") for name in self._fields})
        tags = tuple(feed_tags)
        matches = []
        candidates = self.candidates(document)
        latin = document.latin if self._latin else document
        for index in candidates:
            rule = self.rules[index]
            if rule.feeds is not None and not rule.applies_to(feed_name, tags):
                continue
            evaluator = self._evaluators[index]
            if evaluator is None:
                evaluator = self._evaluators[index] = compile_query(
                    self._queries[index], self._keys
                )
            hits = evaluator(latin if rule.transliterate else document)
            if hits is not None:
                terms = tuple(dict.fromkeys([hit.term for hit in hits]))
                matches.append(
                    Match(rule.name, terms, rule.notify, tuple(hits[:MAX_HITS]), rule.stories)
                )
        return matches


def _automaton(keys: list[str]) -> Any:
    """An automaton finding every key (overlapping ones too), named by its number."""
    return ahocorasick_rs.AhoCorasick(keys) if keys else None


def _regex_set(patterns: list[str]) -> Any:
    """All expressions in one RE2 set, run over all fields at once, one per line. It only
    selects candidates, so a find across two fields costs an evaluation, nothing more; in
    multi-line mode ``^`` and ``$`` find each field's start and end."""
    regexes = re2.Set.SearchSet(REGEX_OPTIONS)
    for pattern in patterns:
        regexes.Add(f"(?m){pattern}")
    regexes.Compile()
    return regexes
