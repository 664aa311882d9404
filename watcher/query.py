"""The query language of rules: parsing to a small tree, printing it back, and the structured
any/all/none form.

Grammar, loosest first (NOT binds tightest)::

    query    := and_expr ("OR" and_expr)*
    and_expr := near (["AND"] near)*
    near     := unary ("NEAR/n" unary)*
    unary    := ("NOT" | "-") unary | primary
    primary  := [field ":"] ( "(" query ")" | '"phrase"' | /regex/ | word | prefix* )

A bare word holding punctuation (``de-escalation``, ``Peskov's``) is the phrase of its words.
Operators are upper case; ``and`` is an ordinary word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import re2

from watcher.errors import QueryError
from watcher.text import words

OPERATORS = frozenset({"AND", "OR", "NOT"})
DEFAULT_FIELDS = ("title", "summary", "content", "author", "tags")
FIELDS = (*DEFAULT_FIELDS, "link", "feed")
MAX_DISTANCE = 1000
MAX_DEPTH = 50
"""Deepest nesting of parentheses, NOT and NEAR a query may have: far beyond any real rule,
and well inside Python's recursion limit for the parser and the matcher that walk the tree."""
_FIELD_PREFIX = re.compile(r"([A-Za-z]+):(?=\S)")
_NEAR = re.compile(r"NEAR(?:/(\S*))?$")
REGEX_OPTIONS = re2.Options()
REGEX_OPTIONS.case_sensitive = False
REGEX_OPTIONS.log_errors = False
REGEX_OPTIONS.max_mem = 8 << 20


@dataclass(frozen=True)
class Term:
    """A word (one element in ``words``) or a phrase; ``prefix`` applies to the last word.
    ``field`` None means the default fields (title, summary, content, author, tags)."""

    words: tuple[str, ...]
    prefix: bool
    text: str
    field: str | None = None


@dataclass(frozen=True)
class Regex:
    """A regular expression, case-insensitive, on a field's plain text.

    It runs on RE2, whose time is linear in the text: no pattern can hang the daemon.
    """

    pattern: str
    field: str | None = None

    @cached_property
    def compiled(self) -> Any:
        return re2.compile(self.pattern, REGEX_OPTIONS)


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    """Both sides within ``distance`` words of each other, in either order, in one field."""

    left: Node
    right: Node
    distance: int


Node = Term | Regex | Not | And | Or | Near


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "NEAR", "term", "regex"
    text: str
    column: int
    quoted: bool = False
    field: str | None = None
    distance: int = 0


def parse(query: str) -> Node:
    """Parse a query; raise QueryError naming the column of the problem."""
    tokens = _tokenize(query)
    if not tokens:
        raise QueryError("empty query", 1)
    parser = _Parser(tokens, len(query) + 1)
    node = parser.query()
    token = parser.peek()
    if token is not None:
        if token.kind == ")":
            raise QueryError("unbalanced parenthesis", token.column)
        raise QueryError(f"unexpected {token.text!r}", token.column)
    return node


def term(text: str, column: int = 1, *, quoted: bool = False, field: str | None = None) -> Term:
    """A term from its text as written; a trailing ``*`` makes the last word a prefix."""
    prefix = text.endswith("*")
    found = tuple(words(text.rstrip("*") if prefix else text))
    if not found:
        what = "phrase" if quoted else "term"
        raise QueryError(f"{what} {text!r} has no letters or digits", column)
    display = text.rstrip("*") + ("*" if prefix else "")
    return Term(found, prefix, display, field)


def regex(pattern: str, column: int = 1, field: str | None = None) -> Regex:
    if not pattern:
        raise QueryError("empty regular expression", column)
    node = Regex(pattern, field)
    try:
        node.compiled  # noqa: B018 - compile now, so that a bad pattern is a config error
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise QueryError(f"bad regular expression /{pattern}/: {reason}", column) from None
    return node


def structured(
    any_of: Sequence[str] = (), all_of: Sequence[str] = (), none_of: Sequence[str] = ()
) -> Node | None:
    """The tree of a rule's ``any`` / ``all`` / ``none`` lists, or None when all are empty."""
    parts: list[Node] = []
    if any_of:
        alternatives = tuple(term(text) for text in any_of)
        parts.append(alternatives[0] if len(alternatives) == 1 else Or(alternatives))
    parts.extend(term(text) for text in all_of)
    parts.extend(Not(term(text)) for text in none_of)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def combine(*nodes: Node | None) -> Node | None:
    """AND of the given trees, skipping None."""
    present = tuple(node for node in nodes if node is not None)
    if not present:
        return None
    return present[0] if len(present) == 1 else And(present)


def has_positive(node: Node) -> bool:
    """Whether every way of matching needs something to be present (not only exclusions)."""
    if isinstance(node, Term | Regex | Near):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(has_positive(child) for child in node.children)
    return all(has_positive(child) for child in node.children)


def to_query(node: Node) -> str:
    """The query text of a tree; parsing it gives the same tree back."""
    if isinstance(node, Term):
        scope = f"{node.field}:" if node.field else ""
        return f'{scope}"{node.text}"'
    if isinstance(node, Regex):
        scope = f"{node.field}:" if node.field else ""
        return f"{scope}/{node.pattern.replace('/', chr(92) + '/')}/"
    if isinstance(node, Not):
        return f"NOT {to_query(node.child)}"
    if isinstance(node, Near):
        return f"({to_query(node.left)} NEAR/{node.distance} {to_query(node.right)})"
    operator = " AND " if isinstance(node, And) else " OR "
    return "(" + operator.join(to_query(child) for child in node.children) + ")"


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        column = i + 1
        if char.isspace():
            i += 1
            continue
        field = None
        scoped = _FIELD_PREFIX.match(query, i)
        if scoped and not query.startswith("://", scoped.end(1)):
            field = scoped[1].lower()
            if field not in FIELDS:
                known = ", ".join(FIELDS)
                raise QueryError(f"unknown field {scoped[1]!r} (known: {known})", column)
            i = scoped.end()
            char = query[i]
        if char in "()":
            tokens.append(_Token(char, char, column, field=field))
            i += 1
        elif char == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed quote", i + 1)
            tokens.append(_Token("term", query[i + 1 : end], i + 1, quoted=True, field=field))
            i = end + 1
        elif char == "/":
            end = _regex_end(query, i + 1)
            if end < 0:
                raise QueryError("unclosed regular expression (a / is missing)", i + 1)
            pattern = query[i + 1 : end].replace("\\/", "/")
            tokens.append(_Token("regex", pattern, i + 1, field=field))
            i = end + 1
        elif (
            field is None
            and char == "-"
            and i + 1 < n
            and not query[i + 1].isspace()
            and query[i + 1] != "-"
        ):
            tokens.append(_Token("NOT", "-", column))
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            text = query[start:i]
            tokens.append(_word_token(text, start + 1, column, field))
    return tokens


def _word_token(text: str, start: int, column: int, field: str | None) -> _Token:
    if field is None and text in OPERATORS:
        return _Token(text, text, column)
    near = _NEAR.match(text) if field is None else None
    if near:
        distance = near[1]
        if distance is None:
            raise QueryError("NEAR needs a distance, e.g. NEAR/5", column)
        if not distance.isdigit() or not 0 < int(distance) <= MAX_DISTANCE:
            raise QueryError(
                f"bad {text!r}: the distance must be a number from 1 to {MAX_DISTANCE}", column
            )
        return _Token("NEAR", text, column, distance=int(distance))
    return _Token("term", text, start, field=field)


def _regex_end(query: str, start: int) -> int:
    """Index of the slash closing a regular expression, skipping escaped slashes; -1 if none."""
    i = start
    while i < len(query):
        if query[i] == "\\":
            i += 2
            continue
        if query[i] == "/":
            return i
        i += 1
    return -1


class _Parser:
    def __init__(self, tokens: list[_Token], end_column: int) -> None:
        self.tokens = tokens
        self.position = 0
        self.end_column = end_column
        self.scope: str | None = None
        self.depth = 0

    def deeper(self, token: _Token, levels: int = 1) -> None:
        self.depth += levels
        if self.depth > MAX_DEPTH:
            raise QueryError(
                f"nested more than {MAX_DEPTH} levels deep (parentheses, NOT and NEAR)",
                token.column,
            )

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def query(self) -> Node:
        children = [self.and_expr()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            children.append(self.and_expr(after=token))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self, after: _Token | None = None) -> Node:
        children = [self.near(after)]
        while (token := self.peek()) is not None and token.kind not in (")", "OR"):
            if token.kind == "AND":
                self.take()
                children.append(self.near(after=token))
            else:
                children.append(self.near())
        return children[0] if len(children) == 1 else And(tuple(children))

    def near(self, after: _Token | None = None) -> Node:
        depth = self.depth
        node = self.unary(after)
        while (token := self.peek()) is not None and token.kind == "NEAR":
            self.take()
            self.deeper(token)
            right = self.unary(after=token)
            for side in (node, right):
                if not _positional(side):
                    raise QueryError(
                        "NEAR joins words, phrases or OR groups of them, not AND or NOT",
                        token.column,
                    )
            node = Near(node, right, token.distance)
        self.depth = depth
        return node

    def unary(self, after: _Token | None = None) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.take()
            self.deeper(token)
            node = Not(self.unary(after=token))
            self.depth -= 1
            return node
        return self.primary(after)

    def primary(self, after: _Token | None) -> Node:
        token = self.peek()
        if token is None or token.kind in (")", "AND", "OR", "NEAR"):
            if after is not None:
                raise QueryError(f"{after.text} needs a term after it", after.column)
            if token is None:
                raise QueryError("expected a term", self.end_column)
            if token.kind == ")":
                raise QueryError("unbalanced parenthesis", token.column)
            raise QueryError(f"{token.text} needs a term before it", token.column)
        self.take()
        field = token.field or self.scope
        if token.kind == "(":
            return self.group(token)
        if token.kind == "regex":
            return regex(token.text, token.column, field)
        return term(token.text, token.column, quoted=token.quoted, field=field)

    def group(self, opening: _Token) -> Node:
        if (inner := self.peek()) is not None and inner.kind == ")":
            raise QueryError("empty parentheses", opening.column)
        outer = self.scope
        if opening.field:
            self.scope = opening.field
        self.deeper(opening)
        try:
            node = self.query()
        finally:
            self.scope = outer
        self.depth -= 1
        closing = self.peek()
        if closing is None or closing.kind != ")":
            raise QueryError("unbalanced parenthesis", opening.column)
        self.take()
        return node


def _positional(node: Node) -> bool:
    """Whether a node has word positions, as NEAR needs: terms, and ORs and NEARs of them."""
    if isinstance(node, Term):
        return True
    if isinstance(node, Or):
        return all(_positional(child) for child in node.children)
    if isinstance(node, Near):
        return True
    return False
