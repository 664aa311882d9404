"""Article pages -> main text (issue 14): extraction on the pages of tests/data/articles, the
page fetch's content rules, and the excerpt that tells why an alert fired."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA
from tests.servers import Route
from watcher.article import as_content, decode, extract, fetch_page, is_fetchable
from watcher.errors import FetchError
from watcher.excerpt import excerpt, sentences
from watcher.http import new_session
from watcher.text import plain, words

PAGES = sorted((DATA / "articles").glob("*.html"))
NAMES = {"peskov", "песков"}
"""Names that the pages' sidebars, "most read" lists and comments mention."""


def test_there_are_enough_pages_each_with_its_expected_text():
    assert len(PAGES) >= 8
    assert all(page.with_suffix(".txt").exists() for page in PAGES)


@pytest.mark.parametrize("path", PAGES, ids=lambda path: path.stem)
def test_the_main_text_is_extracted_without_the_boilerplate(path: Path):
    found = extract(path.read_text(encoding="utf-8"))
    expected = path.with_suffix(".txt").read_text(encoding="utf-8")
    got, want = Counter(words(found)), Counter(words(expected))
    common = sum((got & want).values())
    assert common / sum(want.values()) >= 0.98  # recall
    assert common / sum(got.values()) >= 0.75  # precision (a headline or credit line may stay)
    # a name standing only in the sidebar must never reach the text a rule reads
    assert NAMES & set(words(found)) == NAMES & set(words(expected))


def test_every_page_mentions_a_name_outside_its_article():
    outside = [
        path
        for path in PAGES
        if NAMES
        & set(words(plain(path.read_text(encoding="utf-8"))))
        - set(words(path.with_suffix(".txt").read_text(encoding="utf-8")))
    ]
    assert len(outside) >= 6


def test_the_text_is_stored_as_paragraphs_of_escaped_html():
    assert as_content("A < B & C\n\nSecond") == "<p>A &lt; B &amp; C</p><p>Second</p>"


def test_a_page_is_decoded_in_the_charset_it_names():
    body = "<html><head><meta charset='windows-1251'></head>Песков</html>".encode("cp1251")
    assert "Песков" in decode(body)
    assert "Песков" in decode(body, "windows-1251")
    assert "Песков" in decode("Песков".encode(), "no-such-charset")
    assert decode(b"caf\xe9") == "caf\ufffd"


@pytest.mark.parametrize(
    "link, fetchable",
    [
        ("https://news.example/a", True),
        (" HTTP://news.example/a", True),
        ("ftp://news.example/a", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("http:///nohost", False),
        ("", False),
    ],
)
def test_only_http_links_are_fetched(link: str, fetchable: bool):
    assert is_fetchable(link) is fetchable


@pytest.fixture
def session():
    with new_session("watcher-test/1.0") as s:
        yield s


def read(session, feed_server, route: Route) -> str:
    feed_server.routes["/a"] = route
    return fetch_page(
        session,
        "world",
        feed_server.url("/feed.xml"),
        feed_server.url("/a"),
        timeout=5,
        max_size=100_000,
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "text/html; charset=utf-8", "application/xhtml+xml", "TEXT/HTML"],
)
def test_html_pages_are_read(session, feed_server, content_type):
    page = read(
        session, feed_server, Route(b"<html><p>caf\xc3\xa9</p></html>", content_type=content_type)
    )
    assert page == "<html><p>café</p></html>"
    assert feed_server.requests[0].headers["Accept"].startswith("text/html")
    assert feed_server.requests[0].headers["User-Agent"] == "watcher-test/1.0"


def test_a_page_without_a_content_type_is_read_when_it_is_html(session, feed_server):
    feed_server.routes["/a"] = Route(b"<!DOCTYPE html><html></html>", content_type="")
    assert read(session, feed_server, feed_server.routes["/a"]) == "<!DOCTYPE html><html></html>"


@pytest.mark.parametrize(
    "route, message",
    [
        (Route(b"%PDF-1.7", content_type="application/pdf"), "(application/pdf)"),
        (Route(b'{"a": 1}', content_type="application/json"), "(application/json)"),
        (Route(b"%PDF-1.7", content_type=""), "(no Content-Type)"),
        (Route(b"<html></html>", status=404), "HTTP 404"),
        (Route(b"<html>" + b"x" * 200_000, content_type="text/html"), "larger than"),
    ],
)
def test_other_answers_are_failures_naming_the_feed(session, feed_server, route, message):
    with pytest.raises(FetchError, match=r"^feed world: ") as raised:
        read(session, feed_server, route)
    assert message in str(raised.value)


def test_a_link_that_is_not_http_is_refused_before_any_request(session, feed_server):
    with pytest.raises(FetchError, match="not an http"):
        fetch_page(
            session, "world", feed_server.url("/f"), "file:///etc/passwd", timeout=1, max_size=10
        )
    assert feed_server.requests == []


ARTICLE = (
    "<p>Delegations met on Friday.</p><p>In Moscow, the Kremlin spokesperson Dmitry Peskov told"
    ' reporters that the delegation had "clear instructions". He declined to say more.</p>'
    "<p>Around 1.5 million tonnes were shipped.</p>"
)


def test_the_excerpt_is_the_sentence_around_the_matched_words_with_its_neighbours():
    quote = (
        "In Moscow, the Kremlin spokesperson Dmitry Peskov told reporters that the delegation"
        ' had "clear instructions".'
    )
    assert excerpt(ARTICLE, {"peskov"}, limit=len(quote)) == quote
    assert excerpt(ARTICLE, {"peskov"}, limit=160) == quote + " He declined to say more."
    assert excerpt(ARTICLE, {"peskov"}, limit=200) == (
        f"{quote} He declined to say more. Around 1.5 million tonnes were shipped."
    )


def test_the_sentence_with_most_matched_words_is_chosen():
    assert (
        excerpt(ARTICLE, {"tonnes", "shipped"}, limit=40)
        == "Around 1.5 million tonnes were shipped."
    )


def test_a_long_sentence_is_cut_around_the_first_matched_word():
    text = "word " * 100 + "Peskov said " + "more " * 100
    found = excerpt(text, {"peskov"}, limit=100)
    assert found.startswith("…word") and found.endswith("more…")
    assert "Peskov said" in found and len(found) <= 102


def test_no_excerpt_without_a_matched_word_in_the_content():
    assert excerpt(ARTICLE, {"ankara"}) == ""
    assert excerpt("", {"peskov"}) == ""


def test_paragraphs_and_sentence_ends_split_sentences_but_decimal_points_do_not():
    assert sentences('Around 1.5 tonnes. He said "no." Then<p>Sub head</p><p>Next!</p>') == [
        "Around 1.5 tonnes.",
        'He said "no."',
        "Then",
        "Sub head",
        "Next!",
    ]


def test_full_text_is_a_feed_option_off_by_default(make_config):
    config = make_config(
        feeds=[
            {"url": "http://news.example/a.xml", "name": "a", "full_text": True},
            {"url": "http://news.example/b.xml", "name": "b"},
        ]
    )
    assert [feed.full_text for feed in config.feeds] == [True, False]


def alert_of(content: str, summary: str = "Talks went on.") -> Any:
    from datetime import UTC, datetime

    from watcher.models import Alert, Entry

    return Alert(
        delivery_id="d-1",
        rule="peskov",
        terms=("Peskov",),
        feed_name="world",
        feed_url="https://example.org/rss",
        item=Entry("k", title="Negotiations resume", summary=summary, content=content),
        detected_at=datetime(2026, 11, 24, tzinfo=UTC),
        words=("peskov",),
    )


def test_chat_messages_quote_the_excerpt_with_the_words_marked_and_escaped():
    from watcher.notify import discord, slack

    alert = alert_of("<p>Peskov said &lt;!channel&gt; @everyone [x](http://evil)</p>")
    body = slack.message(alert)["blocks"][0]["text"]["text"]
    assert body.endswith("\n> *Peskov* said &lt;!channel&gt; @everyone [x](http://evil)")
    description = discord.message(alert)["embeds"][0]["description"]
    assert "\n> **Peskov** said \\<!channel\\> @\u200beveryone \\[x\\]\\(http" in description


def test_no_excerpt_when_the_content_holds_no_matched_word_or_is_the_summary():
    from watcher.notify import slack
    from watcher.notify.webhook import payload

    assert payload(alert_of("<p>Nothing here.</p>"))["excerpt"] is None
    assert payload(alert_of("Peskov said", summary="Peskov said"))["excerpt"] is None
    assert "\n>" not in slack.message(alert_of("<p>Nothing here.</p>"))["blocks"][0]["text"]["text"]
    assert payload(alert_of("<p>So Peskov said.</p>"))["excerpt"] == "So Peskov said."
