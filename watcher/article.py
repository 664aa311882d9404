"""An item's page -> its main text, for feeds with ``full_text: true``.

The page is fetched under the feed-fetching rules (``fetch.fetch``: one deadline, the size
limit counted after decompression, every redirect checked) and with the feed's URL as the
origin that decides where it may lead: the link comes from the feed, so a public feed's
article may only be on a public address, from the first hop on; a feed the user put on the
local network may link into it. Only http(s) links are fetched, and only an HTML answer
is used: a PDF, an image or anything else is a failure.

The main text is extracted with trafilatura, which leaves out navigation, "most read"
lists, related links, comments and footers. It was chosen over readability-lxml by
measuring both on the pages of ``tests/data/articles`` (``bench/bench_extract.py``): the
same recall, better precision (fewer boilerplate words in the text), about the same time.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Mapping

import requests

from watcher.errors import FetchError
from watcher.fetch import fetch
from watcher.text import one_line

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_LOOKS_HTML = re.compile(rb"^\s*(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html|head|body)\b", re.I)


def is_fetchable(link: str) -> bool:
    """Whether a link may be fetched at all: an http(s) URL with a host."""
    return bool(re.match(r"(?i)https?://[^/?#\s]", link.strip()))


def fetch_page(
    session: requests.Session,
    feed: str,
    feed_url: str,
    link: str,
    *,
    timeout: float,
    max_size: int,
) -> str:
    """The HTML of an item's page, decoded. Raises FetchError (naming the feed) when the
    link is not http(s), the fetch fails, or the answer is not HTML."""
    if not is_fetchable(link):
        raise FetchError(feed, "the item's link is not an http(s) URL")
    result = fetch(
        session,
        feed,
        link.strip(),
        origin=feed_url,
        timeout=timeout,
        max_size=max_size,
        accept=ACCEPT,
    )
    kind, charset = _content_type(result.headers)
    if kind is None and _LOOKS_HTML.match(result.body[:1024]):
        kind = "text/html"
    if kind not in HTML_TYPES:
        shown = one_line(kind or "no Content-Type")[:60]
        raise FetchError(feed, f"the article page is not HTML ({shown})", url=result.url)
    return decode(result.body, charset)


def _content_type(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    value = headers.get("content-type")
    if not value:
        return None, None
    kind, *params = value.split(";")
    charset = None
    for param in params:
        name, _, given = param.partition("=")
        if name.strip().lower() == "charset":
            charset = given.strip().strip("\"'") or None
    return kind.strip().lower(), charset


def decode(body: bytes, charset: str | None = None) -> str:
    """The page's text: in the charset the server named, else the one its ``<meta>``
    names, else UTF-8; bytes that do not decode become U+FFFD."""
    for candidate in (charset, _meta_charset(body), "utf-8"):
        if candidate:
            try:
                codecs.lookup(candidate)
            except LookupError:
                continue
            return body.decode(candidate, errors="replace")
    return body.decode("utf-8", errors="replace")


def _meta_charset(body: bytes) -> str | None:
    found = _META_CHARSET.search(body[:4096])
    return found.group(1).decode("ascii") if found else None


def extract(page: str) -> str:
    """The main text of an HTML page, one paragraph a line; empty when none is found."""
    import trafilatura  # imported on first use: only full_text feeds need it

    text = trafilatura.extract(
        page,
        favor_precision=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
    )
    return text or ""


def as_content(text: str) -> str:
    """The extracted text as an item's ``content``: one ``<p>`` a paragraph, escaped, so
    that it reads as the HTML that feeds give in that field."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip())
