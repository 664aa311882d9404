"""The query language against its table of cases (tests/data/query_cases.yaml), and
properties of the normaliser and the parser."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DATA
from watcher.errors import QueryError
from watcher.query import FIELDS, And, Near, Node, Not, Or, Regex, Term, parse, term, to_query
from watcher.rules import Matcher, Rule
from watcher.text import fold, words

CASES = yaml.safe_load((DATA / "query_cases.yaml").read_text(encoding="utf-8"))


def _match_case(case: list | dict) -> tuple[str, dict[str, str], str, bool]:
    if isinstance(case, list):
        query, title, expected = case
        return query, {"title": title}, "feed", expected
    return case["query"], case["fields"], case.get("feed", "feed"), case["match"]


MATCHES = [_match_case(case) for case in CASES["matches"]]


def test_the_table_is_large_enough():
    assert len(MATCHES) + len(CASES["errors"]) >= 80


@pytest.mark.parametrize(
    ("query", "fields", "feed", "expected"), MATCHES, ids=[m[0] for m in MATCHES]
)
def test_query_matches(query, fields, feed, expected):
    found = Matcher([Rule("r", parse(query))]).match(fields, feed)
    assert bool(found) is expected


@pytest.mark.parametrize(
    ("query", "message"), CASES["errors"], ids=[e[0] or "empty" for e in CASES["errors"]]
)
def test_query_errors(query, message):
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert str(caught.value) == message


def test_hits_name_the_term_and_field_and_words():
    (match,) = Matcher([Rule("r", parse('title:negotiat* OR "peace talks"'))]).match(
        {"title": "Negotiators arrive", "summary": "Peace talks, then more peace talks"}, "f"
    )
    assert match.terms == ("negotiat*", "peace talks")
    assert [(hit.term, hit.field) for hit in match.hits] == [
        ("negotiat*", "title"),
        ("peace talks", "summary"),
    ]
    assert match.words == {"negotiators", "peace", "talks"}


def test_near_reports_both_sides():
    (match,) = Matcher([Rule("r", parse("Peskov NEAR/4 negotiat*"))]).match(
        {"summary": "Negotiations, Peskov said"}, "f"
    )
    assert set(match.terms) == {"Peskov", "negotiat*"}
    assert match.words == {"peskov", "negotiations"}


def test_matcher_only_evaluates_rules_whose_words_occur():
    rules = [Rule(f"r{n}", parse(f'word{n} OR "other{n} thing"')) for n in range(1000)]
    rules.append(Rule("regex", parse("/zz+top/")))
    rules.append(Rule("negated", parse("word5 OR -missing")))
    matcher = Matcher(rules)
    from watcher.rules import Document

    document = Document({"title": "word7 and other9 thing", "summary": "zzztop"})
    assert [matcher.rules[i].name for i in matcher.candidates(document)] == [
        "r7",
        "r9",
        "regex",
        "negated",
    ]
    assert [
        m.rule for m in matcher.match({"title": "word7 and other9 thing", "summary": "zzztop"}, "f")
    ] == [
        "r7",
        "r9",
        "regex",
        "negated",
    ]


def test_rule_order_is_kept_across_the_index():
    rules = [Rule("b", parse("beta")), Rule("a", parse("alpha")), Rule("c", parse("alph*"))]
    assert [m.rule for m in Matcher(rules).match({"title": "alpha beta"}, "f")] == ["b", "a", "c"]


# properties

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(TEXT)
def test_normaliser_never_fails_and_is_idempotent(text):
    found = words(text)
    assert all(word and word == fold(word) for word in found)
    assert words(" ".join(found)) == found


@given(st.text(alphabet=string.ascii_letters + string.digits + " .,;:'!?-\"()&<>", max_size=200))
def test_ascii_fast_path_agrees_with_the_unicode_path(text):
    import re

    assert words(text) == re.findall(r"[^\W_]+", fold(text))


@settings(max_examples=300)
@given(st.text(alphabet=string.ascii_letters + ' "()-*:/\\ANDORNOTNEAR/5', max_size=60))
def test_parser_never_crashes(query):
    try:
        parse(query)
    except QueryError:
        pass


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäéжσ", min_size=1, max_size=8)


def terms() -> st.SearchStrategy[Node]:
    plain = st.builds(
        lambda ws, prefix, field: term(
            " ".join(ws) + ("*" if prefix else ""), quoted=True, field=field
        ),
        st.lists(WORD, min_size=1, max_size=3),
        st.booleans(),
        st.none() | st.sampled_from(FIELDS),
    )
    regexes = st.builds(
        Regex,
        st.sampled_from(["a+b", r"peace\s+process", "x/y", "^start"]),
        st.none() | st.just("title"),
    )
    return plain | regexes


def trees() -> st.SearchStrategy[Node]:
    positional = st.recursive(
        st.builds(lambda t: t, terms().filter(lambda n: isinstance(n, Term))),
        lambda inner: (
            st.builds(Near, inner, inner, st.integers(1, 20))
            | st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c)))
        ),
        max_leaves=4,
    )
    return st.recursive(
        terms() | positional,
        lambda inner: (
            st.lists(inner, min_size=2, max_size=3).map(lambda c: And(tuple(c)))
            | st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c)))
            | inner.map(Not)
        ),
        max_leaves=8,
    )


@settings(max_examples=300)
@given(trees())
def test_a_printed_query_parses_to_the_same_tree(tree):
    assert parse(to_query(tree)) == tree


def test_fields_without_words_do_not_shift_the_others():
    (match,) = Matcher([Rule("r", parse("summary:Peskov"))]).match(
        {"title": "!!!", "author": "—", "summary": "Peskov"}, "f"
    )
    assert [(hit.field, hit.words) for hit in match.hits] == [("summary", ("peskov",))]


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("(" * 170 + "Peskov" + ")" * 170, 51),
        ("NOT " * 5000 + "Peskov", 201),
        ("a" + " NEAR/1 a" * 3000, 453),
        ("title:(" * 60 + "a" + ")" * 60, 351),
    ],
    ids=["parentheses", "not", "near", "fields"],
)
def test_deep_nesting_is_an_error_naming_the_column(query, column):
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert str(caught.value) == (
        f"column {column}: nested more than 50 levels deep (parentheses, NOT and NEAR)"
    )


def test_nesting_up_to_the_limit_parses_and_matches():
    nested = parse("(" * 49 + "NOT Peskov" + ")" * 49)
    assert Matcher([Rule("r", And((term("Lavrov"), nested)))]).match(
        {"title": "Lavrov spoke"}, "feed"
    )
