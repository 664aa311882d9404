"""HTTP for feeds: conditional GET, size and time limits, status handling -> FetchResult."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from watcher.errors import FetchError
from watcher.http import describe

CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    status: int
    url: str
    """The URL that answered, after redirects."""
    body: bytes
    headers: Mapping[str, str]
    """Response headers, names lower-cased."""
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def fetch(
    session: requests.Session,
    feed: str,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = 30.0,
    max_size: int = 10 * 1000**2,
    headers: Mapping[str, str] | None = None,
) -> FetchResult:
    """GET a feed, conditionally; a 304 is a result with an empty body, not an error.

    ``timeout`` bounds the connection, each read and the whole download, so a server that
    drips bytes cannot hold a worker for long.
    """
    request_headers = {
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.8"
    }
    request_headers.update(headers or {})
    if etag:
        request_headers["If-None-Match"] = etag
    if last_modified:
        request_headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout
    try:
        with session.get(url, headers=request_headers, timeout=timeout, stream=True) as response:
            status = response.status_code
            if status == 304:
                body = b""
            elif 200 <= status < 300:
                body = _read(response, feed, deadline, timeout, max_size)
            else:
                raise FetchError(feed, _status_message(response), status=status)
            response_headers = {name.lower(): value for name, value in response.headers.items()}
            return FetchResult(
                status=status,
                url=response.url,
                body=body,
                headers=response_headers,
                etag=response_headers.get("etag") or etag,
                last_modified=response_headers.get("last-modified") or last_modified,
            )
    except requests.RequestException as exc:
        raise FetchError(feed, describe(exc, timeout)) from exc


def _read(
    response: requests.Response, feed: str, deadline: float, timeout: float, max_size: int
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK):
        size += len(chunk)
        if size > max_size:
            raise FetchError(feed, f"response larger than max_feed_size ({max_size:,} bytes)")
        if time.monotonic() > deadline:
            raise FetchError(feed, f"download took longer than {timeout:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def _status_message(response: requests.Response) -> str:
    reason = response.reason or ""
    message = f"HTTP {response.status_code} {reason}".strip()
    if response.status_code == 410:
        message += " (the feed is gone; remove it from the config)"
    return message
