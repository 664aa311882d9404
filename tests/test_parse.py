from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import DATA, rss
from watcher.errors import FetchError
from watcher.parse import parse_feed


def test_rss_entry_is_normalised():
    body = rss(
        {
            "title": "Istanbul talks",
            "link": "/world/1",
            "guid": "id-1",
            "description": "&lt;p&gt;Peskov said&lt;/p&gt;",
            "pubDate": "Tue, 24 Nov 2026 10:00:00 GMT",
            "category": "Russia",
            "author": "desk@example.org (Desk)",
        }
    )
    parsed = parse_feed(
        "f", body, {"content-type": "application/rss+xml"}, "http://example.org/feed"
    )
    (entry,) = parsed.entries
    assert parsed.title == "Test feed"
    assert entry.key == "id-1"
    assert entry.title == "Istanbul talks"
    assert entry.link == "http://example.org/world/1"
    assert entry.summary == "<p>Peskov said</p>"
    assert entry.tags == ("Russia",)
    assert entry.published == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert parsed.problem is None


def test_atom_entry_fields():
    parsed = parse_feed("f", (DATA / "atom.xml").read_bytes(), {}, "http://example.org/atom")
    (entry,) = parsed.entries
    assert entry.key == "urn:example:1"
    assert entry.link == "http://example.org/news/1"
    assert entry.author == "Desk"
    assert entry.content == "<p>Long text about <i>Istanbul</i></p>"
    assert entry.summary == "Short"
    assert entry.tags == ("russia",)


def test_key_falls_back_to_link_then_hash():
    body = rss({"title": "A", "link": "http://example.org/a"}, {"title": "B"}, {"title": "B"})
    entries = parse_feed("f", body, {}, "http://example.org/").entries
    assert entries[0].key == "http://example.org/a"
    assert entries[1].key.startswith("sha256:")
    assert len(entries) == 2  # the same key twice in one feed is one entry


def test_same_title_and_date_give_the_same_hash_key():
    one = parse_feed("f", rss({"title": "B", "pubDate": "Tue, 24 Nov 2026 10:00:00 GMT"}), {}, "u")
    two = parse_feed("f", rss({"title": "B", "pubDate": "Tue, 24 Nov 2026 10:00:00 GMT"}), {}, "u")
    assert one.entries[0].key == two.entries[0].key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the response is empty"),
        (b"   \n", "the response is empty"),
        ((DATA / "not-xml.txt").read_bytes(), "not a valid RSS or Atom feed"),
        (b"<!DOCTYPE html><html><body>Hello</body></html>", "serves an HTML page"),
    ],
)
def test_not_a_feed_is_a_clear_error(body, message):
    with pytest.raises(FetchError, match=message) as caught:
        parse_feed("broken", body, {}, "http://example.org/")
    assert str(caught.value).startswith("feed broken: ")


def test_a_body_naming_a_local_file_is_never_opened(tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_bytes(rss({"title": "leaked", "guid": "x"}))
    for body in (str(secret).encode(), b"/etc/passwd"):
        with pytest.raises(FetchError, match="not a valid RSS or Atom feed"):
            parse_feed("f", body, {}, "http://example.org/")


def test_feed_with_errors_but_items_is_used_and_reported():
    body = rss({"title": "ok", "guid": "1"}).replace(b"</channel></rss>", b"")
    parsed = parse_feed("f", body, {}, "http://example.org/")
    assert [entry.key for entry in parsed.entries] == ["1"]
    assert parsed.problem


def test_valid_empty_feed_has_no_entries():
    assert parse_feed("f", rss(), {}, "http://example.org/").entries == ()


def test_json_feed_entries():
    body = (DATA / "jsonfeed-1.1.json").read_bytes()
    parsed = parse_feed(
        "f", body, {"content-type": "application/feed+json"}, "https://news.example.org/feed.json"
    )
    assert parsed.title == "JSON News"
    first, second = parsed.entries
    assert first.key == "j1" and first.link == "https://news.example.org/istanbul"
    assert first.content == "<p>Kremlin spokesman <b>Peskov</b> said.</p>"
    assert (first.author, first.tags) == ("Desk", ("russia", "turkey"))
    assert first.published == datetime(2026, 11, 24, 8, tzinfo=UTC)
    assert second.content == "No title &lt;here&gt;" and second.published is None


def test_json_feed_found_by_its_version_without_a_content_type():
    body = (DATA / "jsonfeed-1.1.json").read_bytes()
    assert len(parse_feed("f", body, {}, "https://x/").entries) == 2


def test_json_that_is_not_a_feed_is_a_clear_error():
    with pytest.raises(FetchError, match="JSON that is not a JSON Feed"):
        parse_feed("f", b'{"hello": 1}', {"content-type": "application/json"}, "https://x/")
    with pytest.raises(FetchError, match="not valid JSON"):
        parse_feed("f", b"{broken", {"content-type": "application/json"}, "https://x/")


def test_feed_links_of_an_html_page():
    from watcher.parse import feed_links

    page = b"""<html><head>
    <link rel="alternate" type="application/rss+xml" title="World" href="/world.rss">
    <link rel="alternate" type="application/atom+xml" href="https://other.example.org/atom">
    <link rel="stylesheet" href="/style.css">
    </head></html>"""
    assert feed_links(page, "https://news.example.org/section/") == [
        ("https://news.example.org/world.rss", "World"),
        ("https://other.example.org/atom", ""),
    ]


def test_parser_pool_parses_in_a_worker_and_brings_errors_back():
    from watcher.parse import ParserPool

    pool = ParserPool(1)
    try:
        big = rss(
            *({"guid": str(n), "title": f"item {n}", "description": "x" * 500} for n in range(100))
        )
        assert len(big) > ParserPool.SMALL
        parsed = pool.parse("f", big, {}, "http://example.org/")
        assert len(parsed.entries) == 100 and parsed.entries[0].title == "item 0"
        with pytest.raises(FetchError) as caught:
            pool.parse("broken", b"<html>" + b" " * ParserPool.SMALL + b"</html>", {}, "http://x/")
        assert str(caught.value) == "feed broken: the URL serves an HTML page, not a feed"
    finally:
        pool.close()
