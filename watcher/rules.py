"""Rules compiled from the config, and matching of entries against them.

Each entry is normalised and indexed once (``Document``); every rule then evaluates its query
tree against that index. A match reports the terms, as written in the rule, that were found.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from watcher.query import And, Node, Not, Or, Term
from watcher.text import html_words

SEARCHED_FIELDS = ("title", "summary", "content", "author", "tags")


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
class Match:
    rule: str
    terms: tuple[str, ...]
    notify: tuple[str, ...] = ()


class Document:
    """The words of an entry's searchable fields, indexed by word."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = {name: html_words(text) for name, text in fields.items() if text}
        self.positions: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, field_words in self.fields.items():
            for position, word in enumerate(field_words):
                self.positions[word].append((name, position))

    def has(self, term: Term) -> bool:
        first, rest = term.words[0], term.words[1:]
        starts = self._occurrences(first, term.prefix and not rest)
        if not rest:
            return bool(starts)
        for field, position in starts:
            field_words = self.fields[field]
            end = position + len(term.words)
            if end > len(field_words):
                continue
            following = field_words[position + 1 : end]
            if following[:-1] == list(rest[:-1]) and _word_matches(
                following[-1], rest[-1], term.prefix
            ):
                return True
        return False

    def _occurrences(self, word: str, prefix: bool) -> list[tuple[str, int]]:
        if not prefix:
            return self.positions.get(word, [])
        found: list[tuple[str, int]] = []
        for candidate, places in self.positions.items():
            if candidate.startswith(word):
                found.extend(places)
        return found


def _word_matches(word: str, wanted: str, prefix: bool) -> bool:
    return word.startswith(wanted) if prefix else word == wanted


def evaluate(node: Node, document: Document) -> tuple[bool, list[str]]:
    """Whether the tree matches, and the positive terms that were found."""
    if isinstance(node, Term):
        found = document.has(node)
        return found, [node.text] if found else []
    if isinstance(node, Not):
        matched, _ = evaluate(node.child, document)
        return not matched, []
    if isinstance(node, And):
        terms: list[str] = []
        for child in node.children:
            matched, child_terms = evaluate(child, document)
            if not matched:
                return False, []
            terms.extend(child_terms)
        return True, terms
    assert isinstance(node, Or)
    any_matched, terms = False, []
    for child in node.children:
        matched, child_terms = evaluate(child, document)
        if matched:
            any_matched = True
            terms.extend(child_terms)
    return any_matched, terms


class Matcher:
    """Every rule of a config, ready to match entries."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)

    def match(
        self, fields: dict[str, str], feed_name: str, feed_tags: Iterable[str] = ()
    ) -> list[Match]:
        """The rules matching an entry, given its searchable fields (HTML allowed)."""
        tags = tuple(feed_tags)
        scoped = [rule for rule in self.rules if rule.applies_to(feed_name, tags)]
        if not scoped:
            return []
        document = Document(fields)
        matches = []
        for rule in scoped:
            matched, terms = evaluate(rule.query, document)
            if matched:
                matches.append(Match(rule.name, tuple(dict.fromkeys(terms)), rule.notify))
        return matches
