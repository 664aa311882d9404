"""Feed bytes -> entries, through feedparser.

The body is always handed over as a file object: feedparser treats a str or bytes argument
that names an existing path as a file to open, so a hostile body such as ``/etc/passwd``
would otherwise be read from the local disk.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import json
import multiprocessing
import os
import re
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser

from watcher.errors import FetchError
from watcher.models import Entry
from watcher.text import one_line

_PASSED_HEADERS = ("content-type", "content-language")
_DOCTYPE = re.compile(rb"<!DOCTYPE\b[^\[>]*(?:\[.*?\]\s*)?>", re.S | re.I)
_DOCTYPE_START = re.compile(rb"<!DOCTYPE", re.I)
_ENTITY = re.compile(rb"<!ENTITY", re.I)
_FEED_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "application/rdf+xml",
}
_HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


@dataclass(frozen=True)
class ParsedFeed:
    entries: tuple[Entry, ...]
    title: str = ""
    problem: str | None = None
    """Set when the feed parsed with errors but still yielded entries."""


def parse_feed(feed: str, body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse a feed body; raise FetchError when it is not a feed at all."""
    if _is_json_feed(body, headers):
        return _json_feed(feed, body, url)
    passed = {name: headers[name] for name in _PASSED_HEADERS if name in headers}
    parsed = feedparser.parse(
        io.BytesIO(without_doctype(feed, body)),
        response_headers=passed,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    entries = _unique(entry for raw in parsed.entries if _has_content(entry := _entry(raw, url)))
    bozo = parsed.get("bozo_exception")
    problem = _describe(bozo) if parsed.bozo and not isinstance(bozo, _HARMLESS) else None
    if not entries and (problem or not parsed.get("version")):
        raise FetchError(feed, _not_a_feed(body, headers, problem, url))
    title = one_line(parsed.feed.get("title", ""))
    return ParsedFeed(tuple(entries), title, problem if entries else None)


def without_doctype(feed: str, body: bytes) -> bytes:
    """The body without its DOCTYPE; a feed that declares entities is refused.

    feedparser stops the classic "billion laughs", but not one large entity referenced
    thousands of times (its loose parser expands it without limit: 60 KB became 900 MB) nor
    a DOCTYPE on the XML declaration's line; an external entity could read a local file.
    Feeds have no use for entities of their own, and HTML's are known to feedparser.
    """
    if b"<!" not in body:
        return body
    declared = _DOCTYPE.search(body)
    if _ENTITY.search(declared.group(0) if declared else body):
        raise FetchError(
            feed,
            "the feed declares XML entities (<!ENTITY>): refused, as they can exhaust memory "
            "or read local files",
        )
    if declared is None:
        if _DOCTYPE_START.search(body):
            raise FetchError(feed, "malformed DOCTYPE: refused")
        return body
    return body[: declared.start()] + body[declared.end() :]


def _is_json_feed(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "")
    if "json" in content_type:
        return True
    return body.lstrip()[:1] == b"{" and b"jsonfeed.org/version/" in body[:4096]


def _json_feed(feed: str, body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0 and 1.1 (feedparser 6 does not read them)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(feed, f"not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or "jsonfeed.org/version/" not in str(
        document.get("version", "")
    ):
        raise FetchError(feed, "JSON that is not a JSON Feed (no jsonfeed.org version)")
    items = document.get("items")
    entries = _unique(
        entry
        for raw in (items if isinstance(items, list) else [])
        if isinstance(raw, dict) and _has_content(entry := _json_entry(raw, url))
    )
    return ParsedFeed(tuple(entries), one_line(str(document.get("title", ""))))


def _json_entry(raw: Mapping[str, Any], base: str) -> Entry:
    def text(key: str) -> str:
        value = raw.get(key)
        return value if isinstance(value, str) else ""

    link = text("url") or text("external_url")
    authors = raw.get("authors") or ([raw["author"]] if isinstance(raw.get("author"), dict) else [])
    author = ", ".join(a["name"] for a in authors if isinstance(a, dict) and a.get("name"))
    published = _iso_time(text("date_published") or text("date_modified"))
    title = text("title")
    return Entry(
        key=str(raw.get("id") or link or _key({}, title, "", published)),
        title=title,
        link=urljoin(base, link) if link else "",
        summary=text("summary"),
        content=text("content_html") or html.escape(text("content_text")),
        author=author,
        tags=tuple(tag for tag in raw.get("tags") or () if isinstance(tag, str)),
        published=published,
    )


def _iso_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    return list(dict.fromkeys((urljoin(base, href), title) for href, title in finder.found))


def _not_a_feed(body: bytes, headers: Mapping[str, str], problem: str | None, url: str = "") -> str:
    if not body.strip():
        return "the response is empty"
    content_type = headers.get("content-type", "")
    head = body[:2048].lower()
    if "html" in content_type or b"<html" in head or b"<!doctype html" in head:
        links = feed_links(body, url)
        if links:
            listed = ", ".join(link for link, _ in links[:5])
            return f"the URL serves an HTML page, not a feed; the page names these feeds: {listed}"
        return "the URL serves an HTML page, not a feed"
    return f"not a valid RSS or Atom feed ({problem or 'no items found'})"


def _describe(exc: object) -> str:
    if exc is None:
        return "malformed feed"
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc)
    line = getattr(exc, "getLineNumber", None)
    where = f" at line {line()}" if callable(line) else ""
    return one_line(f"{text}{where}")[:200]


def _has_content(entry: Entry) -> bool:
    """Whether an entry says anything: a broken feed yields husks with nothing in them."""
    return bool(entry.title or entry.link or entry.summary or entry.content)


def _unique(entries: Any) -> list[Entry]:
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)
            unique.append(entry)
    return unique


def _entry(raw: Mapping[str, Any], base: str) -> Entry:
    title = raw.get("title", "") or ""
    link = raw.get("link", "") or ""
    link = urljoin(base, link) if link else ""
    published = _time(raw.get("published_parsed") or raw.get("updated_parsed"))
    contents = raw.get("content") or []
    content = "\n".join(part.get("value", "") for part in contents if part.get("value"))
    tags = tuple(
        tag.get("term") or tag.get("label") for tag in raw.get("tags") or () if tag.get("term")
    )
    return Entry(
        key=_key(raw, title, link, published),
        title=title,
        link=link,
        summary=raw.get("summary", "") or "",
        content=content,
        author=raw.get("author", "") or "",
        tags=tags,
        published=published,
    )


def _key(raw: Mapping[str, Any], title: str, link: str, published: datetime | None) -> str:
    """The feed's id, else the link, else a hash of title and date."""
    given = raw.get("id") or raw.get("guid")
    if given:
        return str(given)
    if link:
        return link
    stamp = published.isoformat() if published else raw.get("published", "")
    digest = hashlib.sha256(f"{title}\x00{stamp}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


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
    trip to a worker would cost more than their parsing, stay in the calling thread."""

    SMALL = 32 * 1024

    def __init__(self, workers: int | None = None) -> None:
        context = multiprocessing.get_context("forkserver")
        self._pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=context)

    def parse(self, feed: str, body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
        if len(body) < self.SMALL:
            return parse_feed(feed, body, headers, url)
        return self._pool.submit(parse_feed, feed, body, dict(headers), url).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
