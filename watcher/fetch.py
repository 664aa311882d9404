"""HTTP for feeds: conditional GET, limits, redirects, status handling -> FetchResult.

Redirects are followed here, not by requests, so that every hop is checked: at most
``MAX_REDIRECTS``, no loop, only http(s) URLs that both URL parsers read alike (urls.py), and
no redirect from a public address to a loopback, private, link-local (cloud metadata) or
otherwise non-global one. A feed the user configured on a private address is theirs to poll;
a public server steering watcher into the local network is refused. The address judged is
the one connected to (netguard.py); through a proxy, where the connection is the proxy's,
the target is judged by its name and refused when in doubt.

One deadline covers the whole fetch: every connection, the headers and body of every hop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from watcher import netguard, urls
from watcher.errors import FetchError
from watcher.http import describe, proxies_for, retry_after
from watcher.text import one_line

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
PERMANENT = frozenset({301, 308})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({408, 425, 429})
"""Error statuses below 500 that say "later", not "never"."""
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json,"
    " application/xml;q=0.9, */*;q=0.8"
)


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
    moved_to: str | None = None
    """Where the feed permanently moved (every redirect on the way was 301 or 308)."""
    downgraded: bool = False
    """A redirect went from https to http."""

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass
class _Hops:
    """Where a fetch has been: the redirects followed so far."""

    origin: str
    current: str
    visited: list[str]
    permanent: bool = True
    downgraded: bool = False
    origin_private: bool | None = None

    def follow(self, feed: str, response: requests.Response) -> None:
        target = _redirect_target(feed, self.current, response, self.visited)
        self.permanent = self.permanent and response.status_code in PERMANENT
        if self.current.startswith("https:") and target.startswith("http:"):
            self.downgraded = True
        self.current = target
        self.visited.append(target)

    @property
    def moved_to(self) -> str | None:
        """Where the feed lives now, if every redirect on the way was permanent."""
        return self.current if self.permanent and self.current != self.origin else None

    def public_only(self) -> bool:
        """Whether this hop may reach global addresses only: it leads away from the URL the
        user configured, and that one is not surely on the local network. Resolved once a
        fetch, and only when the fetch leaves the configured URL."""
        if self.current == self.origin:
            return False
        if self.origin_private is None:
            self.origin_private = netguard.is_private_host(urlsplit(self.origin).hostname or "")
        return not self.origin_private


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
    origin: str | None = None,
    accept: str = ACCEPT,
) -> FetchResult:
    """GET a feed, conditionally; a 304 is a result with an empty body, not an error.

    ``origin`` is the URL the user configured, when ``url`` is where it moved or a link the
    feed gave (an article, ``article.py``): whether a hop may lead into the local network
    depends on the address the user chose, and any URL but ``origin`` itself is checked.
    ``accept`` is the Accept header: feed types, unless an article page is fetched.

    ``timeout`` bounds the whole fetch: connections, headers and body, redirects included,
    so a server that drips bytes cannot hold a worker for long.
    """
    plain_headers = {"Accept": accept}
    if etag:
        plain_headers["If-None-Match"] = etag
    if last_modified:
        plain_headers["If-Modified-Since"] = last_modified
    own_headers = {**plain_headers, **(headers or {})}
    deadline = time.monotonic() + timeout
    hops = _Hops(origin or url, url, [url])
    try:
        for _ in range(MAX_REDIRECTS + 1):
            public_only = hops.public_only()
            if public_only:
                _check_by_name(feed, hops.current)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError(feed, f"timed out after {timeout:g}s", transient=True)
            # the feed's own headers (an Authorization) go to its own site only, never to
            # another host a redirect names, as browsers and requests do
            hop_headers = own_headers if _same_site(hops.origin, hops.current) else plain_headers
            with (
                netguard.within(deadline, public_only=public_only),
                _get(session, hops.current, hop_headers, left) as response,
            ):
                if response.status_code not in REDIRECTS:
                    body = _body(response, feed, deadline, timeout, max_size)
                    response_headers = {k.lower(): v for k, v in response.headers.items()}
                    return FetchResult(
                        status=response.status_code,
                        url=hops.current,
                        body=body,
                        headers=response_headers,
                        etag=response_headers.get("etag") or etag,
                        last_modified=response_headers.get("last-modified") or last_modified,
                        moved_to=hops.moved_to,
                        downgraded=hops.downgraded,
                    )
                hops.follow(feed, response)
    except FetchError as exc:
        exc.url = exc.url or hops.current
        raise
    except netguard.AddressRefused as exc:
        raise FetchError(feed, _refused(exc.host, exc.address), url=hops.current) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s"
            raise FetchError(feed, message, url=hops.current, transient=True) from exc
        cause = describe(exc, timeout)
        raise FetchError(feed, cause, url=hops.current, transient=_transient(exc)) from exc
    raise FetchError(feed, f"more than {MAX_REDIRECTS} redirects", url=hops.current)


def _transient(exc: Exception) -> bool:
    """Whether a request that failed with ``exc`` may well succeed later as it is: not when
    its URL is invalid or the server's certificate fails verification."""
    return not isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.SSLError
        | urllib3.exceptions.LocationValueError,
    )


def _same_site(start: str, target: str) -> bool:
    """Whether a redirect stays on the site it started from: the same host and port, or
    the same host moving from http to https on the default ports."""
    if start == target:
        return True
    try:
        a, b = urlsplit(start), urlsplit(target)
        ports = (a.port, b.port)
    except ValueError:  # not a URL that can be requested: the request says so
        return False
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    if a.scheme == b.scheme:
        return ports[0] == ports[1]
    upgrade = a.scheme == "http" and b.scheme == "https"
    return upgrade and ports[0] in (None, 80) and ports[1] in (None, 443)


def _get(
    session: requests.Session, url: str, headers: Mapping[str, str], timeout: float
) -> requests.Response:
    """One GET, straight to the session's transport adapter: a feed needs no cookies, auth
    hooks or redirect handling from requests, whose general path costs half of a 304 poll."""
    request = _prepared(url, {**session.headers, **headers})
    return session.get_adapter(url).send(
        request,
        stream=True,
        timeout=timeout,
        verify=True if session.verify is None else session.verify,
        proxies=proxies_for(url),
    )


_PORT = r"[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
_PLAIN_URL = re.compile(
    rf"https?://[a-z0-9][a-z0-9.-]*(?::(?:{_PORT}))?/[A-Za-z0-9._~/!$&'()*+,;=:?-]*(?<!\?)"
)
"""A URL that requests would prepare unchanged: lower-case host, no user name, a valid port,
a path, no percent-escape or character to escape, no fragment, no empty query (``_prepared``
also rules out dot segments)."""
_DOT_SEGMENT = re.compile(r"/\.\.?(?:[/?]|$)")


def _prepared(url: str, headers: Mapping[str, str | bytes]) -> requests.PreparedRequest:
    """The GET of ``url``. Preparing the URL, cookies and body is a fifth of a 304 poll in
    requests, and a feed's URL is most often one it would leave as it is: that one is taken
    as it is (tests/test_fetch.py checks that requests would prepare it the same)."""
    if not _PLAIN_URL.fullmatch(url) or _DOT_SEGMENT.search(url):
        return requests.Request("GET", url, headers=headers).prepare()
    request = requests.PreparedRequest()
    request.method = "GET"
    request.url = url
    request.prepare_headers(headers)
    return request


def _body(
    response: requests.Response, feed: str, deadline: float, timeout: float, max_size: int
) -> bytes:
    """The body of a 2xx (empty for a 304); an error status raises FetchError."""
    status = response.status_code
    if status == 304:
        _release(response)
        return b""
    if 200 <= status < 300:
        body = _read(response, feed, deadline, timeout, max_size)
        _release(response)
        return body
    wait = retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    raise FetchError(
        feed,
        _status_message(response),
        status=status,
        transient=status in TRANSIENT_STATUSES or status >= 500,
        retry_after=wait,
    )


def _redirect_target(
    feed: str, current: str, response: requests.Response, visited: list[str]
) -> str:
    location = response.headers.get("Location")
    if not location:
        raise FetchError(feed, f"HTTP {response.status_code} redirect without a Location")
    if urls.CONTROL.search(location):
        raise FetchError(feed, "redirect refused: its Location contains control characters")
    try:
        target = urljoin(current, location)
        scheme = urlsplit(target).scheme
        relative = not urlsplit(location).netloc
    except ValueError as exc:
        raise FetchError(feed, "redirect refused: its Location cannot be parsed") from exc
    if scheme not in ("http", "https"):
        raise FetchError(feed, f"redirect to a non-http(s) URL refused ({one_line(scheme)}:)")
    # a relative Location keeps the host part, credentials included, of the URL the user wrote
    problem = urls.problem(target, credentials=relative)
    if problem:
        raise FetchError(feed, f"redirect refused: {problem}")
    if target in visited:
        raise FetchError(feed, "redirect loop")
    return target


def _check_by_name(feed: str, url: str) -> None:
    """Refuse, before connecting, a hop to a host that is a non-global address by its very
    name, or, through a proxy (where the connection judged would be the proxy's), any host
    not surely public."""
    host = urlsplit(url).hostname or ""
    address = netguard.literal_address(host)
    if address is not None:
        allowed = netguard.is_global(address)
    elif requests.utils.select_proxy(url, proxies_for(url)):
        allowed = netguard.is_public_host(host)
    else:
        return
    if not allowed:
        raise FetchError(feed, _refused(host, address))


def _refused(host: str, address: netguard.Address | None) -> str:
    shown = one_line(host)
    if address is not None and str(address) != host.strip("[]"):
        shown += f" at {address}"
    return f"redirect from a public address to a non-public one refused ({shown})"


def _read(
    response: requests.Response, feed: str, deadline: float, timeout: float, max_size: int
) -> bytes:
    """The body, decompressed, cut off past ``max_size`` (counted after decompression, so a
    gzip bomb stops early) or past the deadline.

    ``read1`` returns what has arrived instead of waiting for a whole chunk, so the deadline
    is checked between the bytes of a server that drips them.
    """
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if time.monotonic() >= deadline:
                message = f"download took longer than {timeout:g}s"
                raise FetchError(feed, message, transient=True) from exc
            cause = describe(requests.ConnectionError(exc), timeout)
            raise FetchError(feed, cause, transient=True) from exc
        if not chunk:
            break
        size += len(chunk)
        if size > max_size:
            raise FetchError(feed, f"response larger than max_feed_size ({max_size:,} bytes)")
        if time.monotonic() > deadline:
            raise FetchError(feed, f"download took longer than {timeout:g}s", transient=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _release(response: requests.Response) -> None:
    """Give the connection back to the pool once the body is read, for the next request to
    the host to reuse (requests would close it: it did not read the body itself)."""
    response.raw.read()
    response.raw.release_conn()


def _status_message(response: requests.Response) -> str:
    reason = one_line(response.reason or "")
    message = f"HTTP {response.status_code} {reason}".strip()
    if response.status_code == 410:
        message += " (the feed is gone; remove it from the config)"
    return message
