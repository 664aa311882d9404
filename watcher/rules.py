"""Rules compiled into one matcher, and matching of entries against them.

An entry is normalised and tokenised once (``Document``). The matcher keeps an inverted
index from words (and the first letters of prefixes) to the rules that need them, so that
only rules some of whose words occur in the entry are evaluated: the cost grows with the
words an entry holds, not with the number of rules. Rules that cannot be indexed (a regular
expression alone, say) are evaluated on every entry.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import re2

from watcher.query import DEFAULT_FIELDS, REGEX_OPTIONS, And, Near, Node, Not, Or, Regex, Term
from watcher.text import html_words, strip_html, words

PREFIX_KEY = 4
"""Prefixes are indexed by their first letters, at most this many."""
MAX_HITS = 50
"""Hits kept per match: enough to highlight, bounded for a text that repeats a word."""


@dataclass(frozen=True)
class Rule:
    name: str
    query: Node
    feeds: frozenset[str] | None = None
    """Feed names, and ``tag:x`` for feeds tagged x, the rule is scoped to; None for every feed."""
    notify: tuple[str, ...] = ()

    def applies_to(self, feed_name: str, feed_tags: Iterable[str]) -> bool:
        if self.feeds is None:
            return True
        return feed_name in self.feeds or any(f"tag:{tag}" in self.feeds for tag in feed_tags)


@dataclass(frozen=True)
class Hit:
    """One term of a rule found in one field; ``words`` are the normalised words found."""

    term: str
    field: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    rule: str
    terms: tuple[str, ...]
    """The rule's terms that were found, as written in the rule."""
    notify: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()

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
    """An entry's fields (HTML allowed) as normalised words, with lazy indexes on them."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.raw = {name: text for name, text in fields.items() if text}
        self.tokens = {name: html_words(text) for name, text in self.raw.items()}

    @cached_property
    def vocabulary(self) -> set[str]:
        """Every distinct word, in any field."""
        return set().union(*self.tokens.values())

    @cached_property
    def _sets(self) -> dict[str, set[str]]:
        return {name: set(tokens) for name, tokens in self.tokens.items()}

    @cached_property
    def _sorted(self) -> dict[str, list[str]]:
        return {name: sorted(distinct) for name, distinct in self._sets.items()}

    @cached_property
    def _plain(self) -> dict[str, str]:
        return {name: strip_html(text) for name, text in self.raw.items()}

    def has_word(self, field: str, word: str) -> bool:
        found = self._sets.get(field)
        return found is not None and word in found

    def words_with_prefix(self, field: str, prefix: str) -> list[str]:
        distinct = self._sorted.get(field, [])
        found = []
        for index in range(bisect.bisect_left(distinct, prefix), len(distinct)):
            if not distinct[index].startswith(prefix):
                break
            found.append(distinct[index])
        return found

    def positions(self, field: str, word: str) -> list[int]:
        if not self.has_word(field, word):
            return []
        tokens = self.tokens[field]
        found = [tokens.index(word)]
        try:
            while True:
                found.append(tokens.index(word, found[-1] + 1))
        except ValueError:
            return found

    def plain_texts(self) -> list[str]:
        return list(self._plain.values())

    def plain(self, field: str) -> str:
        return self._plain.get(field, "")


def _fields(field: str | None) -> tuple[str, ...]:
    return DEFAULT_FIELDS if field is None else (field,)


def evaluate(node: Node, document: Document) -> tuple[bool, list[Hit]]:
    """Whether the tree matches the document, and the hits of its positive terms."""
    if isinstance(node, Term | Regex):
        found = (
            _term_hits(node, document) if isinstance(node, Term) else _regex_hits(node, document)
        )
        return bool(found), found
    if isinstance(node, Not):
        matched, _ = evaluate(node.child, document)
        return not matched, []
    if isinstance(node, Near):
        spans = _spans(node, document)
        return bool(spans), [hit for span in spans for hit in span.hits]
    if isinstance(node, And):
        hits: list[Hit] = []
        for child in node.children:
            matched, child_hits = evaluate(child, document)
            if not matched:
                return False, []
            hits.extend(child_hits)
        return True, hits
    any_matched, hits = False, []
    for child in node.children:
        matched, child_hits = evaluate(child, document)
        if matched:
            any_matched = True
            hits.extend(child_hits)
    return any_matched, hits


def _term_hits(term: Term, document: Document) -> list[Hit]:
    if len(term.words) > 1:
        return [hit for span in _term_spans(term, document) for hit in span.hits]
    word = term.words[0]
    hits = []
    for field in _fields(term.field):
        if term.prefix:
            found = document.words_with_prefix(field, word)
            if found:
                hits.append(Hit(term.text, field, tuple(found)))
        elif document.has_word(field, word):
            hits.append(Hit(term.text, field, (word,)))
    return hits


def _regex_hits(node: Regex, document: Document) -> list[Hit]:
    hits = []
    for field in _fields(node.field):
        found = node.compiled.search(document.plain(field))
        if found:
            hits.append(Hit(f"/{node.pattern}/", field, tuple(words(found.group(0)))))
    return hits


def _term_spans(term: Term, document: Document) -> list[_Span]:
    """Every place a term occurs: a word, a prefix or a phrase."""
    spans = []
    *exact, last = term.words
    for field in _fields(term.field):
        tokens = document.tokens.get(field)
        if not tokens:
            continue
        lasts = document.words_with_prefix(field, last) if term.prefix else [last]
        if exact:
            starts = document.positions(field, exact[0])
        else:
            starts = sorted(p for word in lasts for p in document.positions(field, word))
        size = len(term.words)
        for start in starts:
            end = start + size
            if end > len(tokens) or tokens[start : end - 1] != exact:
                continue
            found = tokens[end - 1]
            if found == last or (term.prefix and found.startswith(last)):
                spans.append(_Span(field, start, end, (Hit(term.text, field, (*exact, found)),)))
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
"""("word", w): the rule needs the word w; ("prefix", p): a word starting with p;
("regex", r): text that the regular expression r finds."""


def _anchors(node: Node) -> Anchors | None:
    """What the entry must hold at least one of for the node to match; None when the node can
    match without anything indexable (a NOT)."""
    if isinstance(node, Term):
        *exact, last = node.words
        if not node.prefix:
            exact.append(last)
        if exact:
            return frozenset({("word", max(exact, key=len))})
        return frozenset({("prefix", last[:PREFIX_KEY])})
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


class Matcher:
    """Every rule of a config, compiled once into an index from words to rules.

    Regular expressions are indexed too: all of them run as one RE2 set, one pass over each
    field, and only the rules whose expression was found are evaluated.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._always: list[int] = []
        self._words: dict[str, list[int]] = {}
        self._prefixes: dict[int, dict[str, list[int]]] = {}
        self._regexes: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            anchors = _anchors(rule.query)
            if anchors is None:
                self._always.append(index)
                continue
            for kind, key in anchors:
                if kind == "word":
                    self._words.setdefault(key, []).append(index)
                elif kind == "prefix":
                    self._prefixes.setdefault(len(key), {}).setdefault(key, []).append(index)
                else:
                    self._regexes.setdefault(key, []).append(index)
        self._word_keys = frozenset(self._words)
        self._prefix_keys = {length: frozenset(keys) for length, keys in self._prefixes.items()}
        self._regex_rules = list(self._regexes.values())
        self._regex_set = _regex_set(list(self._regexes)) if self._regexes else None

    def candidates(self, document: Document) -> list[int]:
        """Indexes of the rules that may match, in rule order."""
        vocabulary = document.vocabulary
        found = set(self._always)
        for word in vocabulary & self._word_keys:
            found.update(self._words[word])
        for length, keys in self._prefix_keys.items():
            starts = set(map(_slicer(length), vocabulary))
            for key in starts & keys:
                found.update(self._prefixes[length][key])
        if self._regex_set is not None:
            for text in document.plain_texts():
                for pattern in self._regex_set.Match(text) or ():
                    found.update(self._regex_rules[pattern])
        return sorted(found)

    def match(
        self, fields: Mapping[str, str], feed_name: str, feed_tags: Iterable[str] = ()
    ) -> list[Match]:
        """The rules matching an entry, given its fields (HTML allowed) and its feed."""
        document = Document({**fields, "feed": feed_name})
        tags = tuple(feed_tags)
        matches = []
        for index in self.candidates(document):
            rule = self.rules[index]
            if not rule.applies_to(feed_name, tags):
                continue
            matched, hits = evaluate(rule.query, document)
            if matched:
                terms = tuple(dict.fromkeys(hit.term for hit in hits))
                matches.append(Match(rule.name, terms, rule.notify, tuple(hits[:MAX_HITS])))
        return matches


@functools.cache
def _slicer(length: int) -> Callable[[str], str]:
    """The first ``length`` letters of a word (a shorter word is kept whole and matches no
    key of that length)."""
    return operator.itemgetter(slice(0, length))


def _regex_set(patterns: list[str]) -> Any:
    regexes = re2.Set.SearchSet(REGEX_OPTIONS)
    for pattern in patterns:
        regexes.Add(pattern)
    regexes.Compile()
    return regexes
