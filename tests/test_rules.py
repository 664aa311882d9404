from __future__ import annotations

import pytest

from watcher.errors import QueryError
from watcher.query import has_positive, parse, structured
from watcher.rules import Matcher, Rule
from watcher.text import one_line, plain, strip_html, words


def matches(query: str, text: str, field: str = "title") -> tuple[str, ...] | None:
    """The matched terms, or None when the query does not match."""
    found = Matcher([Rule("r", parse(query))]).match({field: text}, "feed")
    return found[0].terms if found else None


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("Peskov", "Kremlin spokesman Peskov said", True),
        ("Peskov", "PESKOV SAID", True),
        ("Peskov", "Peskóv said", True),
        ("Peskóv", "peskov said", True),
        ("Peskov", "Peskovich said", False),
        ("Peskov", "Peskov's remarks", True),
        ("war", "an award ceremony", False),
        ("war", "the war, again", True),
        ('"Istanbul talks"', "new Istanbul talks planned", True),
        ('"Istanbul talks"', "talks in Istanbul", False),
        ('"Istanbul talks"', "Istanbul: talks resume", True),
        ('"Istanbul talks"', "<p>In <b>Istanbul</b> talks</p>", True),
        ('"Istanbul talks"', "Istanbul &amp; talks", True),
        ("negotiat*", "negotiations stalled", True),
        ("negotiat*", "renegotiation", False),
        ("Istanbul AND negotiat*", "Istanbul negotiators met", True),
        ("Istanbul AND negotiat*", "Istanbul met", False),
        ("Istanbul negotiat*", "negotiating in Istanbul", True),
        ("Istanbul OR Ankara", "Ankara says", True),
        ("Istanbul OR Ankara", "Paris says", False),
        ("Istanbul -football", "Istanbul football derby", False),
        ("Istanbul NOT football", "Istanbul talks", True),
        ("(Istanbul OR Ankara) talks", "Ankara talks", True),
        ("(Istanbul OR Ankara) talks", "Ankara meets", False),
        ("a OR b c", "a", True),  # AND binds tighter than OR
        ("a OR b c", "b", False),
        ("de-escalation", "calls for de-escalation", True),
        ("de-escalation", "de escalation", True),
        ("de-escalation", "escalation", False),
        ("Песков", "Дмитрий ПЕСКОВ заявил", True),
        ("Песков", "Песковский", False),
        ("Πεσκοφ", "ο Πεσκόφ είπε", True),
        ('"cease-fire"', "a cease fire holds", True),
        ("and", "this and that", True),
        ("Straße", "strasse closed", True),
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
    ("query", "message"),
    [
        ("", "column 1: empty query"),
        ("   ", "column 1: empty query"),
        ("(Istanbul talks", "column 1: unbalanced parenthesis"),
        ("Istanbul talks)", "column 15: unbalanced parenthesis"),
        ("Istanbul OR", "column 10: OR needs a term after it"),
        ("AND Istanbul", "column 1: AND needs a term before it"),
        ("Istanbul AND NOT", "column 14: NOT needs a term after it"),
        ('"Istanbul talks', "column 1: unclosed quote"),
        ('"!!"', "column 1: phrase '!!' has no letters or digits"),
        ("()", "column 1: empty parentheses"),
    ],
)
def test_query_errors_name_the_column(query, message):
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert str(caught.value) == message


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
