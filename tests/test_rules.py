from __future__ import annotations

import pytest

from watcher.query import has_positive, parse, structured
from watcher.rules import Matcher, Rule
from watcher.text import one_line, plain, strip_html, words


def matches(query: str, text: str, field: str = "title") -> tuple[str, ...] | None:
    """The matched terms, or None when the query does not match."""
    found = Matcher([Rule("r", parse(query))]).match({field: text}, "feed")
    return found[0].terms if found else None


# The query language's table of cases is tests/data/query_cases.yaml (tests/test_query.py);
# these are the cases it does not have.
@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ('"Istanbul talks"', "Istanbul &amp; talks", True),  # an entity is punctuation
        ("Πεσκοφ", "ο Πεσκόφ είπε", True),  # the accent in the text, not in the query
        ("and", "this and that", True),  # a lower-case operator word is a word
    ],
)
def test_matching_semantics(query, text, expected):
    assert (matches(query, text) is not None) is expected


def test_matched_terms_are_recorded_as_written():
    assert matches(
        '"Istanbul talks" OR (Istanbul AND negotiat*)', "Istanbul talks on negotiations"
    ) == (
        "Istanbul talks",
        "Istanbul",
        "negotiat*",
    )
    assert matches("Peskov -football", "Peskov") == ("Peskov",)


def test_phrase_does_not_span_fields():
    matcher = Matcher([Rule("r", parse('"Istanbul talks"'))])
    assert matcher.match({"title": "Meeting in Istanbul", "summary": "talks resume"}, "f") == []


def test_rule_scope_by_feed_name_and_tag():
    rule = Rule("r", parse("Peskov"), frozenset({"tass", "tag:russia"}))
    matcher = Matcher([rule])
    assert matcher.match({"title": "Peskov"}, "tass")
    assert matcher.match({"title": "Peskov"}, "meduza", ["russia"])
    assert matcher.match({"title": "Peskov"}, "bbc", ["world"]) == []


def test_match_carries_the_rule_notifiers():
    matcher = Matcher([Rule("r", parse("Peskov"), None, ("slack", "mail"))])
    assert matcher.match({"title": "Peskov"}, "f")[0].notify == ("slack", "mail")


def test_structured_form():
    node = structured(any_of=["Peskov", "Kremlin spokesperson"], none_of=["football"])
    assert node is not None
    matcher = Matcher([Rule("r", node)])
    assert matcher.match({"title": "the Kremlin spokesperson said"}, "f")[0].terms == (
        "Kremlin spokesperson",
    )
    assert matcher.match({"title": "Peskov at the football"}, "f") == []
    both = structured(all_of=["Istanbul", "talk*"])
    assert both is not None
    matches_all = Matcher([Rule("r", both)])
    assert matches_all.match({"title": "Istanbul talking"}, "f")
    assert matches_all.match({"title": "Istanbul"}, "f") == []


@pytest.mark.parametrize(
    ("query", "positive"),
    [("-a", False), ("NOT a", False), ("a -b", True), ("a OR -b", False), ("(a OR b) -c", True)],
)
def test_positive_terms_required(query, positive):
    assert has_positive(parse(query)) is positive


def test_normalisation():
    assert words("Peskóv's DE-escalation, 2026!") == ["peskov", "s", "de", "escalation", "2026"]
    assert words(
        strip_html("<p>Istan<!-- x -->bul</p><script>evil()</script>&eacute;t&eacute;")
    ) == [
        "istan",
        "bul",
        "ete",
    ]
    assert words("北京 会谈") == ["北京", "会谈"]


def test_plain_and_one_line():
    assert plain("<p>a  <b>b</b></p>\n c", limit=None) == "a b c"
    assert plain("x" * 50, limit=10) == "x" * 9 + "…"
    assert one_line("title\r\nBcc: evil@example.org\x00") == "title Bcc: evil@example.org"
