from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from tests.attack.bounded import run_bounded
from tests.conftest import DATA, rss
from tests.integration.process import gone, wait_for
from watcher.errors import FetchError, ParseError
from watcher.parse import (
    MAX_KEY,
    MAX_LINE,
    MAX_TAG,
    MAX_TAGS,
    ParserPool,
    feed_links,
    parse_feed,
)
from watcher.text import MAX_FIELD


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
    with pytest.raises(ParseError, match=message) as caught:
        parse_feed("broken", body, {}, "http://example.org/")
    assert str(caught.value).startswith("feed broken: ")
    assert not caught.value.transient


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


def test_small_bodies_start_no_process_and_need_no_feedparser_import_until_parsed():
    """A cycle of 304s or small feeds spares the worker pool, whose queues start
    multiprocessing's resource tracker (a process), and feedparser's import: both cost start-up."""
    script = """
import multiprocessing.resource_tracker as tracker, sys
from watcher.parse import ParserPool
pool = ParserPool(1)
assert "feedparser" not in sys.modules, "feedparser imported before any parse"
parsed = pool.parse("f", b'<rss version="2.0"><channel><item><title>a</title></item></channel></rss>', {}, "http://x/")
assert parsed.entries[0].title == "a"
assert pool.pids() == [] and tracker._resource_tracker._pid is None, "a process was started"
pool.close()
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


JSON_HEADERS = {"content-type": "application/feed+json"}


def json_feed(*items: object) -> bytes:
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "items": list(items)}
    ).encode()


@pytest.mark.parametrize(
    "item",
    [
        {"id": "1", "title": "Istanbul talks", "tags": 5},
        {"id": "1", "title": "Istanbul talks", "tags": "russia"},
        {"id": "1", "title": "Istanbul talks", "authors": [{"name": 5}]},
        {"id": "1", "title": "Istanbul talks", "authors": 5, "author": "Desk"},
        {"id": "1", "title": "Istanbul talks", "date_published": "0001-01-01T00:00:00+01:00"},
        {"id": "1", "title": "Istanbul talks", "date_published": "9999-12-31T23:59:59-01:00"},
        {"id": "1", "title": "Istanbul talks", "url": {"nested": ["x"]}, "summary": 7},
    ],
)
def test_json_feed_values_of_the_wrong_type_are_left_out(item):
    (entry,) = parse_feed("f", json_feed(item), JSON_HEADERS, "https://x/").entries
    assert (entry.key, entry.title, entry.tags, entry.author) == ("1", "Istanbul talks", (), "")
    assert (entry.link, entry.summary, entry.published) == ("", "", None)


def test_json_feed_ids_that_are_numbers_are_keys_and_other_values_are_not():
    entries = parse_feed(
        "f", json_feed({"id": 7, "title": "a"}, {"id": [1], "title": "b"}), JSON_HEADERS, "u"
    ).entries
    assert entries[0].key == "7" and entries[1].key.startswith("sha256:")


def test_json_nested_too_deep_is_a_clear_error():
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 5000 + b"]" * 5000
    with pytest.raises(FetchError, match=r"^feed f: not valid JSON \(nested too deep\)$"):
        parse_feed("f", body + b"}", JSON_HEADERS, "https://x/")


def test_json_feed_lone_surrogates_are_replaced():
    body = json_feed({"id": "a\udc00", "title": "Istanbul \ud800 talks"})
    (entry,) = parse_feed("f", body, JSON_HEADERS, "https://x/").entries
    assert (entry.key, entry.title) == ("a\ufffd", "Istanbul \ufffd talks")
    entry.title.encode()  # SQLite stores what UTF-8 can encode


def test_json_version_of_another_type_is_not_a_json_feed():
    body = json.dumps({"version": [[["https://jsonfeed.org/version/1.1"]]], "items": []}).encode()
    with pytest.raises(FetchError, match="JSON that is not a JSON Feed"):
        parse_feed("f", body, JSON_HEADERS, "https://x/")


ENTITY_ERROR = "the feed declares XML entities"
REFUSED = (
    "the feed declares XML entities (<!ENTITY>): refused, as they can exhaust memory "
    "or read local files"
)
ENTITY_FEED = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY a "Istanbul talks">]>
<rss version="2.0"><channel><title>t</title><item><title>&a;</title><guid>1</guid></item>
</channel></rss>"""


def test_a_second_doctype_cannot_declare_entities():
    # the check used to read the first DOCTYPE only: 130 KB became 1.14 GB and a 100 MB summary
    body = ENTITY_FEED.replace("<!DOCTYPE", "<!DOCTYPE rss>\n<!DOCTYPE", 1).encode()
    with pytest.raises(FetchError, match=ENTITY_ERROR):
        parse_feed("f", body, {}, "http://x/")


@pytest.mark.parametrize(
    ("encoding", "headers"),
    [
        ("utf-16", {}),  # with a byte order mark
        ("utf-16-le", {"content-type": "application/xml; charset=utf-16le"}),
        ("utf-16-be", {}),  # no mark: found by its "<?" in UTF-16
        ("utf-32", {}),
        ("cp037", {}),  # EBCDIC
        ("utf-7", {"content-type": "application/rss+xml; charset=utf-7"}),
    ],
)
def test_entities_are_refused_in_any_encoding(encoding, headers):
    body = ENTITY_FEED.replace('"1.0"?>', f'"1.0" encoding="{encoding}"?>').encode(encoding)
    if encoding == "utf-7":  # Python leaves "<" as it is; "+ADw-" is another way to write it
        body = body.replace(b"<!", b"+ADw-!")
    with pytest.raises(FetchError, match=ENTITY_ERROR):
        parse_feed("f", body, headers, "http://x/")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "cp037", "iso-8859-5"])
def test_feeds_in_other_encodings_still_parse(encoding):
    text = rss({"guid": "1", "title": "Переговоры в Стамбуле"}).decode()
    body = text.replace('encoding="utf-8"', f'encoding="{encoding}"').encode(
        encoding, errors="xmlcharrefreplace"
    )
    (entry,) = parse_feed("f", body, {"content-type": "application/rss+xml"}, "http://x/").entries
    assert entry.title == "Переговоры в Стамбуле"


def test_the_http_charset_decides_over_the_declaration():
    body = rss({"guid": "1", "title": "Café"}).decode().encode("latin-1")
    headers = {"content-type": "application/rss+xml; charset=iso-8859-1"}
    assert parse_feed("f", body, headers, "http://x/").entries[0].title == "Café"


def test_an_entity_named_after_the_root_is_text_not_a_declaration():
    # an article about XML may show one; no parser declares an entity after the root starts
    body = rss(
        {"guid": "1", "title": "XXE explained", "description": '<![CDATA[<!ENTITY x "y">]]>'},
        {"guid": "2", "title": "&x;"},
    ).replace(b"</channel>", b'<!DOCTYPE r [<!ENTITY x "EXPANDED">]></channel>')
    parsed = parse_feed("f", body, {}, "http://x/")
    assert "ENTITY" in parsed.entries[0].summary
    assert "EXPANDED" not in repr(parsed.entries)


def test_a_feed_without_any_element_is_not_a_feed():
    for body in (b"<!-- never closed <rss>", b"<?xml version='1.0'?><!DOCTYPE [", b"plain text"):
        with pytest.raises(FetchError, match=r"not a valid RSS or Atom feed \(no XML element"):
            parse_feed("f", body, {}, "http://x/")


def test_a_parse_error_still_names_the_line_of_the_feed():
    body = b'<?xml version="1.0"?>\n<!-- c -->\n\n<rss version="2.0"><channel><item><title>a</titl>'
    with pytest.raises(FetchError, match="mismatched tag at line 4"):
        parse_feed("f", body, {}, "http://x/")


@pytest.mark.parametrize(
    "reference",
    ["&#99999999;", "&#x110000;", "&#xD800;", "&#" + "9" * 5000 + ";", "&#x" + "f" * 30 + ";"],
)
def test_character_references_that_name_no_character_do_not_break_the_parser(reference):
    # feedparser's loose parser (used once the feed is malformed) raised ValueError,
    # OverflowError or UnicodeEncodeError on these
    body = rss({"guid": "1", "title": f"Istanbul {reference} talks"}) + b"<broken"
    (entry,) = parse_feed("f", body, {}, "http://x/").entries
    assert entry.title == "Istanbul \ufffd talks"


def test_fields_are_cut_to_their_size():
    long_link = "http://example.org/" + "a" * MAX_LINE
    body = rss(
        {
            "guid": "g" * (MAX_KEY + 1),
            "title": "t" * (MAX_LINE + 1),
            "link": long_link,
            "description": "s" * (MAX_FIELD + 1),
            "author": "a" * (MAX_LINE + 1),
            **{f"category{n}": f"{n}" * 300 for n in range(60)},
        }
    )
    body = re.sub(rb"category\d+", b"category", body)
    (entry,) = parse_feed("f", body, {}, "http://x/").entries
    assert len(entry.title) == MAX_LINE and len(entry.author) == MAX_LINE
    assert len(entry.summary) == MAX_FIELD
    assert entry.link == ""  # cut, it would lead elsewhere
    assert len(entry.tags) == MAX_TAGS and {len(tag) for tag in entry.tags} == {MAX_TAG}
    assert entry.key.startswith("sha256:")  # too long to store: its hash, the same each time
    assert parse_feed("f", body, {}, "http://x/").entries[0].key == entry.key


def test_control_characters_are_dropped_from_links():
    body = json_feed({"id": "7", "url": "http://news.example/7\x1b]0;PWNED\x07\x1b[2J"})
    (entry,) = parse_feed("f", body, JSON_HEADERS, "https://x/").entries
    assert entry.link == "http://news.example/7]0;PWNED[2J"


def test_a_link_that_is_no_url_is_dropped():
    body = rss({"guid": "1", "title": "a", "link": "http://[broken/"})
    assert parse_feed("f", body, {}, "http://x/").entries[0].link == ""


def test_feed_links_of_a_page_are_clean():
    page = b"""<html><head>
    <link rel="alternate" type="application/rss+xml" title="A\x1b[2J" href="/a\x1b[2J.rss">
    <link rel="alternate" type="application/rss+xml" href="http://[broken/">
    </head></html>"""
    assert feed_links(page, "https://x/") == [("https://x/a[2J.rss", "A [2J")]


def test_hostile_bodies_are_parsed_in_linear_time_and_bounded_memory():
    # Before: <!DOCTYPE [ x 80,000 (880 KB) took 343 s; an XML declaration of 4,000
    # "encoding=''" (44 KB) 132 s (feedparser's expression is cubic); 40 KB of newlines
    # before the root 5.7 s (quadratic); a second DOCTYPE took 130 KB to 1.14 GB; Python
    # decodes punycode, a charset a server can name, in quadratic time (160 KB: 4.6 s).
    out = run_bounded(
        """
        import time
        from watcher.errors import FetchError, ParseError
        from watcher.parse import parse_feed
        item = b"<rss version='2.0'><channel><item><title>Istanbul talks</title><guid>1</guid>"
        item += b"</item></channel></rss>"
        blowup = b'<!DOCTYPE rss>\\n<!DOCTYPE rss [<!ENTITY a "' + b"A" * 20_000 + b'">]>'
        blowup += item.replace(b"talks", b"&a;" * 5_000)
        bodies = {
            "doctypes": b"<!DOCTYPE [" * 800_000,
            "declaration": b"<?xml " + b"encoding=''" * 800_000 + b"?>" + item,
            "quotes": b"<?xml encoding='" + b"'" * 8_000_000,
            "newlines": b"<?xml version='1.0'?>" + b"\\n" * 8_000_000 + item,
            "comment-newlines": b"<!--" + b"\\n" * 8_000_000 + b"-->" + item,
            "blowup": blowup,
            "blowup-utf16": blowup.decode().encode("utf-16"),
        }
        punycode = {"content-type": "application/xml; charset=punycode"}
        bodies["punycode"] = b"a-" + b"b" * 2_000_000
        for name, body in bodies.items():
            headers = punycode if name == "punycode" else {}
            try:
                print(name, len(parse_feed("f", body, headers, "http://x/").entries))
            except FetchError as exc:
                print(name, exc.reason)
        """,
        seconds=60,
        memory=1 << 30,
    )
    not_a_feed = "not a valid RSS or Atom feed (no XML element found)"
    assert out.splitlines() == [
        f"doctypes {not_a_feed}",
        "declaration 1",
        f"quotes {not_a_feed}",
        "newlines 1",
        "comment-newlines 1",
        f"blowup {REFUSED}",
        f"blowup-utf16 {REFUSED}",
        f"punycode {not_a_feed}",
    ]


def big_feed(items: int = 100) -> bytes:
    body = rss(
        *({"guid": str(n), "title": f"item {n}", "description": "x" * 500} for n in range(items))
    )
    assert len(body) > ParserPool.SMALL
    return body


def test_a_killed_parser_worker_is_replaced(caplog):
    # Before, every later body of 32 KB or more failed with BrokenProcessPool until restart
    pool = ParserPool(1)
    try:
        assert len(pool.parse("f", big_feed(), {}, "http://x/").entries) == 100
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid))
        assert len(pool.parse("f", big_feed(), {}, "http://x/").entries) == 100
        assert pool.restarts == 1 and pool.pids() != [pid]
        assert "parser workers replaced (1 so far): a parser process died" in caplog.text
    finally:
        pool.close()


def test_parses_in_flight_when_a_worker_dies_are_tried_again():
    pool = ParserPool(2)
    body = big_feed(2000)
    try:
        with ThreadPoolExecutor(8) as threads:
            futures = [threads.submit(pool.parse, "f", body, {}, "http://x/") for _ in range(8)]
            wait_for(lambda: len(pool.pids()) == 2)
            os.kill(pool.pids()[0], signal.SIGKILL)
            assert [len(future.result().entries) for future in futures] == [2000] * 8
        assert pool.restarts == 1
    finally:
        pool.close()


def test_a_parse_past_its_deadline_is_abandoned_and_its_worker_killed(caplog):
    pool = ParserPool(1)
    try:
        pool.parse("f", big_feed(), {}, "http://x/")
        (pid,) = pool.pids()
        pool.deadline = 0.05
        with pytest.raises(FetchError) as caught:
            pool.parse("slow", big_feed(5000), {}, "http://x/")  # about a second of parsing
        assert str(caught.value) == "feed slow: parsing took longer than 0.05s: abandoned"
        wait_for(lambda: gone(pid))
        assert pool.restarts == 1
        assert "parser workers replaced (1 so far): feed slow: parsing took longer" in caplog.text
        pool.deadline = 30
        assert len(pool.parse("f", big_feed(), {}, "http://x/").entries) == 100
    finally:
        pool.close()
