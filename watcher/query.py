"""The query language of rules: parsing to a small tree, and the structured any/all/none form.

Grammar, loosest first (NOT binds tightest)::

    query   := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*
    unary   := ("NOT" | "-") unary | primary
    primary := "(" query ")" | '"phrase"' | word | prefix*

A bare word holding punctuation (``de-escalation``, ``Peskov's``) is a phrase of its words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from watcher.errors import QueryError
from watcher.text import words

OPERATORS = frozenset({"AND", "OR", "NOT"})


@dataclass(frozen=True)
class Term:
    """A word (one element in ``words``) or a phrase; ``prefix`` applies to the last word."""

    words: tuple[str, ...]
    prefix: bool
    text: str


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "term"
    text: str
    column: int
    quoted: bool = False


def parse(query: str) -> Node:
    """Parse a query; raise QueryError naming the column of the problem."""
    tokens = _tokenize(query)
    if not tokens:
        raise QueryError("empty query", 1)
    parser = _Parser(tokens, len(query) + 1)
    node = parser.query()
    if parser.peek() is not None:
        token = parser.peek()
        assert token is not None
        if token.kind == ")":
            raise QueryError("unbalanced parenthesis", token.column)
        raise QueryError(f"unexpected {token.text!r}", token.column)
    return node


def term(text: str, column: int = 1, *, quoted: bool = False) -> Term:
    """A term from its text as written; a trailing ``*`` makes the last word a prefix."""
    prefix = text.endswith("*")
    found = tuple(words(text.rstrip("*") if prefix else text))
    if not found:
        what = "phrase" if quoted else "term"
        raise QueryError(f"{what} {text!r} has no letters or digits", column)
    display = text.rstrip("*") + ("*" if prefix else "")
    return Term(found, prefix, display)


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
    """Whether every way of matching needs some term to be present (not only exclusions)."""
    if isinstance(node, Term):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(has_positive(child) for child in node.children)
    return all(has_positive(child) for child in node.children)


def positive_terms(node: Node) -> Iterator[Term]:
    """The terms that can contribute to a match (those not under a NOT)."""
    if isinstance(node, Term):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from positive_terms(child)


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        column = i + 1
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, column))
            i += 1
        elif char == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed quote", column)
            tokens.append(_Token("term", query[i + 1 : end], column, quoted=True))
            i = end + 1
        elif char == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] != "-":
            tokens.append(_Token("NOT", "-", column))
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            text = query[start:i]
            kind = text if text in OPERATORS else "term"
            tokens.append(_Token(kind, text, column))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token], end_column: int) -> None:
        self.tokens = tokens
        self.position = 0
        self.end_column = end_column

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
        children = [self.unary(after)]
        while (token := self.peek()) is not None and token.kind not in (")", "OR"):
            if token.kind == "AND":
                self.take()
                children.append(self.unary(after=token))
            else:
                children.append(self.unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self, after: _Token | None = None) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.take()
            return Not(self.unary(after=token))
        return self.primary(after)

    def primary(self, after: _Token | None) -> Node:
        token = self.peek()
        if token is None or token.kind in (")", "AND", "OR"):
            column = token.column if token is not None else self.end_column
            if after is not None:
                raise QueryError(f"{after.text} needs a term after it", after.column)
            if token is not None and token.kind == ")":
                raise QueryError("unbalanced parenthesis", column)
            if token is not None:
                raise QueryError(f"{token.text} needs a term before it", column)
            raise QueryError("expected a term", column)
        self.take()
        if token.kind == "(":
            if (inner := self.peek()) is not None and inner.kind == ")":
                raise QueryError("empty parentheses", token.column)
            node = self.query()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise QueryError("unbalanced parenthesis", token.column)
            self.take()
            return node
        return term(token.text, token.column, quoted=token.quoted)
