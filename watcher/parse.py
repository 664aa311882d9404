"""Feed bytes -> entries, through feedparser.

The body is always handed over as a file object: feedparser treats a str or bytes argument
that names an existing path as a file to open, so a hostile body such as ``/etc/passwd``
would otherwise be read from the local disk.

What a feed gives is bounded here, in time and in size. feedparser gets text already decoded
whose prolog (all before the root element) is a fresh XML declaration: its own encoding
sniffing and DOCTYPE handling run expressions that take cubic or quadratic time on a hostile
first line or prolog, and the entity declarations a prolog holds are refused on the decoded
text, whatever encoding hid them. Each field of an entry is cut to a size (``MAX_*``).
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html
import io
import itertools
import json
import logging
import multiprocessing
import os
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from types import ModuleType
from typing import Any
from urllib.parse import urljoin

from watcher.errors import FetchError, ParseError
from watcher.models import Entry
from watcher.text import MAX_FIELD, one_line

log = logging.getLogger(__name__)

MAX_LINE = 2_000
"""The most characters kept of an item's title, author and link, and of the feed's title; a
longer link is dropped, not cut (cut, it would lead elsewhere)."""
MAX_KEY = 2_000
"""The longest item key stored as given; a longer one is replaced by its hash."""
MAX_TAGS = 50
MAX_TAG = 200

_PASSED_HEADERS = ("content-type", "content-language")
_ENTITY = re.compile("<!ENTITY", re.I)
_FEED_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "application/rdf+xml",
}
_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32be"),
    (codecs.BOM_UTF32_LE, "utf-32le"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
    (codecs.BOM_UTF8, "utf-8"),
)
_MARKERS = {  # "<?xm" or "<" in encodings that are not ASCII-compatible
    b"\x4c\x6f\xa7\x94": "cp037",
    b"\x00\x3c\x00\x3f": "utf-16be",
    b"\x3c\x00\x3f\x00": "utf-16le",
    b"\x00\x00\x00\x3c": "utf-32be",
    b"\x3c\x00\x00\x00": "utf-32le",
}
_XML_TYPES = ("application/xml", "application/xml-dtd", "application/xml-external-parsed-entity")
_UNICODE_NAMES = {"u16", "utf-16", "utf16", "utf_16", "u32", "utf-32", "utf32", "utf_32"}
_UNICODE_NAMES |= {"iso-10646-ucs-2", "iso-10646-ucs-4", "csucs4", "csunicode", "ucs-2", "ucs-4"}
_SLOW_CODECS = {"punycode", "idna"}
"""Codecs a feed may name but does not get: Python decodes punycode in quadratic time."""
_XML_ENCODING = re.compile(r"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']")
_XML_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>"
_ROOT = re.compile(r"<[A-Za-z_]")
_CHARREF = re.compile(r"&#(?:[xX][0-9a-fA-F]{4,}|[0-9]{5,})")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINK_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_REFUSED_ENTITIES = (
    "the feed declares XML entities (<!ENTITY>): refused, as they can exhaust memory "
    "or read local files"
)


@dataclass(frozen=True)
class ParsedFeed:
    entries: tuple[Entry, ...]
    title: str = ""
    problem: str | None = None
    """Set when the feed parsed with errors but still yielded entries."""


def parse_feed(feed: str, body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse a feed body; raise ParseError when it is not a feed at all."""
    if _is_json_feed(body, headers):
        return _json_feed(feed, body, url)
    passed = {name: headers[name] for name in _PASSED_HEADERS if name in headers}
    prepared = _prepared(feed, body, passed)
    if prepared is None:
        raise ParseError(feed, _not_a_feed(body, headers, "no XML element found", url))
    utf8 = {"content-type": "application/xml; charset=utf-8"}
    if "content-language" in passed:
        utf8["content-language"] = passed["content-language"]
    feedparser = _feedparser()
    try:
        parsed = feedparser.parse(
            io.BytesIO(prepared),
            response_headers=utf8,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # its loose parser has raised ValueError, OverflowError, ...
        raise ParseError(
            feed, f"not a valid RSS or Atom feed (feedparser failed: {_describe(exc)})"
        ) from exc
    entries = _unique(entry for raw in parsed.entries if _has_content(entry := _entry(raw, url)))
    bozo = parsed.get("bozo_exception")
    harmless = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
    problem = _describe(bozo) if parsed.bozo and not isinstance(bozo, harmless) else None
    if not entries and (problem or not parsed.get("version")):
        raise ParseError(feed, _not_a_feed(body, headers, problem, url))
    title = _valid(one_line(_text(parsed.feed.get("title")))[:MAX_LINE])
    return ParsedFeed(tuple(entries), title, problem if entries else None)


def _feedparser() -> ModuleType:
    """feedparser, imported at the first body to parse: a cycle of 304s never needs it, and
    its import is a twentieth of the start-up of ``watcher once``."""
    import feedparser

    return feedparser


def without_doctype(feed: str, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    """The XML document ``body`` in UTF-8, its prolog (XML declaration, DOCTYPE, comments)
    replaced by a bare XML declaration; a document that declares entities is refused.

    feedparser stops the classic "billion laughs", but not one large entity referenced
    thousands of times (its loose parser expands it without limit: 60 KB became 900 MB), nor
    a DOCTYPE on the XML declaration's line or a second DOCTYPE; an external entity could read
    a local file. Feeds have no use for entities of their own, and HTML's are known to
    feedparser.
    """
    prepared = _prepared(feed, body, headers or {})
    if prepared is None:
        raise ParseError(feed, "not an XML document: no element found")
    return prepared


def _prepared(feed: str, body: bytes, headers: Mapping[str, str]) -> bytes | None:
    """What feedparser is given (see ``without_doctype``); None when there is no element."""
    text = _decoded(body, headers)
    root = _root_start(text)
    if _ENTITY.search(text, 0, len(text) if root < 0 else root):
        raise ParseError(feed, _REFUSED_ENTITIES)
    if root < 0:
        return None
    # The root keeps its line, so that a parse error names the line it has in the feed (up to
    # a point: feedparser takes quadratic time on a prolog of many lines).
    lines = text.count("\n", 0, root) + (0 if text.startswith("<?xml") else 1)
    prolog = _XML_DECLARATION + "\n" * min(max(lines, 1), 100)
    rest = _CHARREF.sub(_valid_charref, text[root:]) if "&#" in text else text[root:]
    return (prolog + rest).encode("utf-8", errors="replace")


def _decoded(body: bytes, headers: Mapping[str, str]) -> str:
    """The body as text, decoded as feedparser decides (a byte order mark; RFC 3023: the HTTP
    charset, the XML declaration; then UTF-8, Windows-1252, ISO-8859-2), without its
    expression that takes cubic time on a long first line. A byte order mark comes first, as
    RFC 7303 says: feedparser read UTF-16 text as UTF-8 (it decodes), and saw no markup."""
    marked = ""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            marked, body = encoding, body[len(bom) :]
            break
    sniffed = marked or _MARKERS.get(body[:4], "")
    found = _XML_ENCODING.match(body[:1024].decode(sniffed or "latin-1", errors="ignore"))
    declared = found.group(1).lower() if found else ""
    if sniffed and declared in _UNICODE_NAMES:
        declared = sniffed
    candidates = (marked, _rfc3023(headers, declared), declared, sniffed, "utf-8", "windows-1252")
    for encoding in dict.fromkeys(name for name in candidates if name):
        try:
            if codecs.lookup(encoding).name in _SLOW_CODECS:
                continue
            return body.decode("gb18030" if encoding.lower() == "gb2312" else encoding)
        except (ValueError, LookupError):  # UnicodeDecodeError, or not a charset Python knows
            continue
    return body.decode("iso-8859-2")  # every byte is a character there


def _rfc3023(headers: Mapping[str, str], declared: str) -> str:
    """The encoding RFC 3023 gives a body of this Content-Type and XML declaration."""
    content_type, _, parameters = (headers.get("content-type") or "").partition(";")
    content_type = content_type.strip().lower()
    charset = ""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'")
    if content_type in _XML_TYPES or (
        content_type.startswith("application/") and content_type.endswith("+xml")
    ):
        return charset or declared or "utf-8"
    if content_type.startswith("text/"):
        return charset or "us-ascii"
    if headers and "content-type" not in headers:
        return declared or "iso-8859-1"
    return declared or "utf-8"


def _root_start(text: str) -> int:
    """Where the root element starts, past the XML declaration, processing instructions,
    comments, DOCTYPEs (with their internal subset) and whatever else precedes it; -1 when
    there is none. In one pass: each search starts where the last ended."""
    position = 0
    while (start := text.find("<", position)) >= 0:
        if _ROOT.match(text, start):
            return start
        if text.startswith("<?", start):
            end = text.find("?>", start + 2)
        elif text.startswith("<!--", start):
            end = text.find("-->", start + 4)
        elif text.startswith("<!", start):
            end = _declaration_end(text, start + 2)
        else:
            end = start
        if end < 0:
            return -1
        position = end + 1
    return -1


def _declaration_end(text: str, start: int) -> int:
    """Where the declaration (a DOCTYPE) that starts before ``start`` ends: its ``>``, past
    an internal subset in brackets."""
    end = text.find(">", start)
    bracket = text.find("[", start, end if end >= 0 else len(text))
    if bracket < 0:
        return end
    close = text.find("]", bracket)
    return -1 if close < 0 else text.find(">", close)


def _valid_charref(found: re.Match[str]) -> str:
    """A numeric character reference, or U+FFFD's when it names no character: feedparser's
    loose parser raises on those (a surrogate, a number beyond Unicode or of 4,300 digits)."""
    ref = found.group()
    digits = ref[3:] if ref[2] in "xX" else ref[2:]
    digits = digits.lstrip("0") or "0"
    if len(digits) <= 8:
        value = int(digits, 16 if ref[2] in "xX" else 10)
        if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
            return ref
    return "&#65533"


def _is_json_feed(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "")
    if "json" in content_type:
        return True
    return body.lstrip()[:1] == b"{" and b"jsonfeed.org/version/" in body[:4096]


def _json_feed(feed: str, body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0 and 1.1 (feedparser 6 does not read them). Each value is taken only when
    it has the type the specification gives it."""
    try:
        document = json.loads(body)
    except RecursionError as exc:
        raise ParseError(feed, "not valid JSON (nested too deep)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(feed, f"not valid JSON ({one_line(str(exc))[:200]})") from exc
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError(feed, "JSON that is not a JSON Feed (no jsonfeed.org version)")
    items = document.get("items")
    entries = _unique(
        entry
        for raw in (items if isinstance(items, list) else [])
        if isinstance(raw, dict) and _has_content(entry := _json_entry(raw, url))
    )
    return ParsedFeed(tuple(entries), _valid(one_line(_text(document.get("title")))[:MAX_LINE]))


def _json_entry(raw: Mapping[str, Any], base: str) -> Entry:
    def text(key: str) -> str:
        return _text(raw.get(key))

    link = text("url") or text("external_url")
    authors = raw.get("authors")
    if not isinstance(authors, list) or not authors:
        authors = [raw["author"]] if isinstance(raw.get("author"), dict) else []
    names = (author.get("name") for author in authors if isinstance(author, dict))
    published = _iso_time(text("date_published") or text("date_modified"))
    title = text("title")
    given = raw.get("id")
    if isinstance(given, int | float) and not isinstance(given, bool):
        given = str(given)
    tags = raw.get("tags")
    return _bounded(
        base,
        given if isinstance(given, str) else "",
        title=title,
        link=link,
        summary=text("summary"),
        content=text("content_html") or html.escape(text("content_text")[:MAX_FIELD]),
        author=", ".join(name for name in names if isinstance(name, str) and name),
        tags=tags if isinstance(tags, list) else (),
        published=published,
    )


def _iso_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class _LinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "link" and "alternate" in values.get("rel", "").lower().split():
            kind = values.get("type", "").lower()
            if kind in _FEED_TYPES and values.get("href"):
                self.found.append((values["href"], values.get("title", "")))


def feed_links(page: bytes, base: str) -> list[tuple[str, str]]:
    """The feeds an HTML page advertises (``<link rel="alternate" type="...rss+xml">``),
    as (absolute URL, title)."""
    finder = _LinkFinder()
    finder.feed(page.decode("utf-8", errors="replace"))
    found = ((_clean_link(base, href), one_line(title)[:MAX_LINE]) for href, title in finder.found)
    return list(dict.fromkeys((link, title) for link, title in found if link))


def _not_a_feed(body: bytes, headers: Mapping[str, str], problem: str | None, url: str = "") -> str:
    if not body.strip():
        return "the response is empty"
    content_type = headers.get("content-type", "")
    head = body[:2048].lower()
    if "html" in content_type or b"<html" in head or b"<!doctype html" in head:
        links = feed_links(body, url)
        if links:
            listed = ", ".join(link[:200] for link, _ in links[:5])
            return f"the URL serves an HTML page, not a feed; the page names these feeds: {listed}"
        return "the URL serves an HTML page, not a feed"
    return f"not a valid RSS or Atom feed ({problem or 'no items found'})"


def _describe(exc: object) -> str:
    if exc is None:
        return "malformed feed"
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc) or type(exc).__name__
    line = getattr(exc, "getLineNumber", None)
    where = f" at line {line()}" if callable(line) else ""
    return one_line(f"{text}{where}")[:200]


def _has_content(entry: Entry) -> bool:
    """Whether an entry says anything: a broken feed yields husks with nothing in them."""
    return bool(entry.title or entry.link or entry.summary or entry.content)


def _unique(entries: Iterable[Entry]) -> list[Entry]:
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)
            unique.append(entry)
    return unique


def _entry(raw: Mapping[str, Any], base: str) -> Entry:
    contents = raw.get("content") or []
    tags = raw.get("tags") or ()
    return _bounded(
        base,
        str(raw.get("id") or raw.get("guid") or ""),
        title=_text(raw.get("title")),
        link=_text(raw.get("link")),
        summary=_text(raw.get("summary")),
        content="\n".join(part.get("value", "") for part in contents if part.get("value")),
        author=_text(raw.get("author")),
        tags=[tag.get("term") or tag.get("label") for tag in tags if tag.get("term")],
        published=_time(raw.get("published_parsed") or raw.get("updated_parsed")),
        date_text=_text(raw.get("published")),
    )


def _bounded(
    base: str,
    given_key: str,
    *,
    title: str,
    link: str,
    summary: str,
    content: str,
    author: str,
    tags: Iterable[object],
    published: datetime | None,
    date_text: str = "",
) -> Entry:
    """An entry with every field cut to its size and its link absolute and clean.

    Its key is the feed's id, else the link, else a hash of title and date; a key too long
    to store whole is replaced by its hash, which keeps it one key per item.
    """
    link = _clean_link(base, _valid(link))
    key = _valid(given_key) or link
    if not key:
        key = _hash_key(f"{title}\x00{published.isoformat() if published else date_text}")
    if len(key) > MAX_KEY:
        key = _hash_key(key)
    kept = (_valid(tag[:MAX_TAG]) for tag in tags if isinstance(tag, str) and tag)
    return Entry(
        key=key,
        title=_valid(title[:MAX_LINE]),
        link=link if len(link) <= MAX_LINE else "",
        summary=_valid(summary[:MAX_FIELD]),
        content=_valid(content[:MAX_FIELD]),
        author=_valid(author[:MAX_LINE]),
        tags=tuple(itertools.islice(kept, MAX_TAGS)),
        published=published,
    )


def _valid(text: str) -> str:
    """Text without lone surrogates: a JSON string can escape one, and neither UTF-8 nor
    SQLite takes it."""
    return _SURROGATE.sub("\ufffd", text)


def _hash_key(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()
    return f"sha256:{digest[:32]}"


def _clean_link(base: str, link: str) -> str:
    """The link made absolute, without the control characters a terminal would obey (no URL
    holds one); empty when it is no URL at all."""
    link = _LINK_CONTROL.sub("", link).strip().replace(" ", "%20")
    if not link:
        return ""
    try:
        return urljoin(base, link)
    except ValueError:  # "http://[x": urlsplit refuses a malformed IPv6 host
        return ""


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None


class ParserPool:
    """Feeds parsed in worker processes, one per core: feedparser is pure Python, so threads
    share one core while parsing dominates a cycle of changed feeds. Small bodies, whose
    trip to a worker would cost more than their parsing, stay in the calling thread.

    The pool heals: when a worker dies (killed, or by the OOM killer) the pool is broken for
    good, so it is replaced; a parse that runs past ``deadline`` is abandoned, its worker
    killed and the pool replaced. ``restarts`` counts the replacements. Parses wait for a free
    worker before they are sent, so the deadline counts parsing, not queueing.
    """

    SMALL = 32 * 1024

    def __init__(self, workers: int | None = None, *, deadline: float = 30.0) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.deadline = deadline
        """Seconds a parse may take in a worker."""
        self.restarts = 0
        """How many times the pool was replaced: a worker died or a parse ran out of time."""
        self._free = threading.BoundedSemaphore(self.workers)
        self._lock = threading.Lock()
        self._closed = False
        self._pool: ProcessPoolExecutor | None = None
        """Made at the first large body: making one starts multiprocessing's resource
        tracker, a process of its own, which a cycle of 304s or of small feeds can spare."""

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the parser pool is closed")
            if self._pool is None:
                self._pool = self._start()
            return self._pool

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    def parse(self, feed: str, body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
        if len(body) < self.SMALL:
            return parse_feed(feed, body, headers, url)
        with self._free:
            return self._parse_in_worker(feed, body, dict(headers), url)

    def _parse_in_worker(
        self, feed: str, body: bytes, headers: dict[str, str], url: str
    ) -> ParsedFeed:
        """The parse, tried again once on a new pool when the pool broke under it (another
        parse's worker may have been the one that died)."""
        for _ in range(2):
            pool = self._current()
            try:
                future = pool.submit(parse_feed, feed, body, headers, url)
            except BrokenProcessPool:
                self._replace(pool, "a parser process died")
                continue
            except RuntimeError:  # shut down: replaced by another thread, or closed
                if self._closed:
                    raise
                continue
            try:
                return future.result(timeout=self.deadline)
            except TimeoutError:
                self._replace(pool, f"feed {feed}: parsing took longer than {self.deadline:g}s")
                raise ParseError(
                    feed, f"parsing took longer than {self.deadline:g}s: abandoned"
                ) from None
            except BrokenProcessPool:
                self._replace(pool, "a parser process died")
        raise FetchError(
            feed, "the parser process died while parsing the feed (out of memory?)", transient=True
        )

    def _replace(self, broken: ProcessPoolExecutor, reason: str) -> None:
        """Put a new pool in the broken one's place (once, whichever thread sees it first)
        and kill the broken one's workers."""
        with self._lock:
            if self._pool is not broken or self._closed:
                return
            self._pool = self._start()
            self.restarts += 1
            restarts = self.restarts
        log.warning("parser workers replaced (%d so far): %s", restarts, reason)
        for process in list((getattr(broken, "_processes", None) or {}).values()):
            try:
                process.kill()  # no public way before Python 3.14's kill_workers()
            except (OSError, ValueError):
                pass  # already gone
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The process ids of the running workers (started on demand, up to ``workers``)."""
        return list(getattr(self._pool, "_processes", None) or ())

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
