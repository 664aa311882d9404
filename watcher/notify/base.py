"""What every notifier shares: the interface, HTTP posting under a deadline, secrets kept out
of errors, and safe text for messages."""

from __future__ import annotations

import re
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager, ProxyManager

from watcher.errors import DeliveryError
from watcher.excerpt import excerpt
from watcher.http import describe, proxies_for, retry_after
from watcher.models import Alert, Digest
from watcher.text import one_line, plain
from watcher.values import Rate

SUMMARY_LIMIT = 300
EXCERPT_LIMIT = 200
RETRYABLE_STATUS = frozenset({408, 429})
ANSWER_LIMIT = 4096
"""Bytes of a receiver's answer read at most: enough for an error's detail, and a hostile
body of any size costs no more (the connection is closed rather than drained)."""
DETAIL_LIMIT = 200
"""Characters of an error answer kept in the delivery's last error."""
REDACTED = "***"


class Deadline:
    """A time limit on a whole exchange with a server: connection, request and answer.

    Socket timeouts bound each read, so a server that drips one byte at a time could hold a
    send for ever; at the deadline, every socket being watched is shut down from a timer
    thread, which ends the read or write in progress at once. The watch keeps a duplicate
    of each socket's descriptor, so it still reaches the connection once TLS wraps it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer = getattr(_active, "deadline", None)
        _active.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _active.deadline = self._outer
        with self._lock:
            self._done = True
            self._timer.cancel()
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        if sock is None:
            return
        try:
            duplicate = socket.socket(fileno=socket.dup(sock.fileno()))
        except OSError:
            return  # closed already
        with self._lock:
            if not self._done:
                self._sockets.append(duplicate)
                if self.expired:
                    _shut(duplicate)
                return
        duplicate.close()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer closed it already


_active = threading.local()
"""The deadline of the send running in this thread, for its connections to report to."""


def _watched(sock: socket.socket) -> socket.socket:
    deadline = getattr(_active, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)
    return sock


class _Watched(HTTPConnection):
    """A connection whose socket the running send's deadline watches, new or reused."""

    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            _watched(self.sock)
        super().request(*args, **kwargs)


class _HTTPConnection(_Watched):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A transport adapter whose connections report their sockets to the running send's
    ``Deadline``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # a SOCKS proxy keeps its own connections
            manager.pool_classes_by_scheme = _POOLS
        return manager


_MOUNT = "watcher-notify:"
"""Where the notifiers' adapter is kept on the shared session: no URL starts with it, so it
serves only the notifiers, and it is closed with the session."""
_mounting = threading.Lock()


def adapter_for(session: requests.Session) -> HTTPAdapter:
    """The session's adapter for notifier posts, mounted on first use (``build_notifiers``
    does it before any thread runs)."""
    with _mounting:
        adapter = session.adapters.get(_MOUNT)
        if not isinstance(adapter, DeadlineAdapter):
            adapter = DeadlineAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
            session.mount(_MOUNT, adapter)
        return adapter


_TOKEN = re.compile(r"^(?![a-z]+$).{6,}$|^.{16,}$")
"""A path segment that looks like a token: long, or more than a lower-case word."""


def secret_parts(url: str) -> list[str]:
    """What of a URL must never be shown: the URL, its path and query, their values, and the
    path segments that look like tokens; each also percent-decoded and -encoded."""
    parts = urlsplit(url)
    found = [url, url.split("://", 1)[-1]]
    if parts.path not in ("", "/"):
        found.append(parts.path)
        found.extend(segment for segment in parts.path.split("/") if _TOKEN.match(segment))
    if parts.query:
        found += [parts.query, f"{parts.path}?{parts.query}"]
        found.extend(value for _, value in parse_qsl(parts.query) if len(value) >= 4)
    if parts.password:
        found.append(parts.password)
    variants = {
        variant
        for part in found
        for variant in (part, unquote(part), quote(part), quote(part, safe=""))
    }
    return [variant for variant in variants if len(variant) >= 4]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, in any case, replaced by ``***``."""
    words = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    if not words or not text:
        return text
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE)
    return pattern.sub(REDACTED, text)


class Notifier(ABC):
    """One configured destination. ``send`` returns once the receiver acknowledged the alert,
    and raises DeliveryError otherwise, saying whether a retry may help.

    ``timeout`` bounds a whole send (connection, request and answer), not each read.
    """

    default_rate: ClassVar[Rate | None] = None
    """The rate limit when the config sets none: a service's documented limit."""

    def __init__(
        self, name: str, options: Any, *, session: requests.Session, timeout: float
    ) -> None:
        self.name = name
        self.options = options
        self.session = session
        self.timeout = options.timeout.total_seconds() if options.timeout else timeout
        self._secrets = self.secrets()

    @abstractmethod
    def send_digest(self, digest: Digest) -> str | None:
        """Deliver a window's alerts as one message, like ``send``."""

    @property
    def rate(self) -> Rate | None:
        return self.options.rate or self.default_rate

    @abstractmethod
    def send(self, alert: Alert) -> str | None:
        """Deliver one alert; return a warning worth keeping (some recipients refused), or
        None."""

    def secrets(self) -> list[str]:
        """What an error or a log line must never show: the URL and everything in it, the
        password, the signing secret, the values of custom headers."""
        options = self.options
        found: list[str] = []
        url = getattr(options, "url", None)
        if url is not None:
            found += secret_parts(url.get_secret_value())
        for key in ("secret", "password"):
            value = getattr(options, key, None)
            if value is not None:
                found.append(value.get_secret_value())
        found += [value for value in getattr(options, "headers", {}).values() if len(value) >= 4]
        return found

    def redact(self, text: str) -> str:
        """``text`` (an answer, an exception) with this notifier's secrets hidden."""
        return redact(text, self._secrets)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """POST and classify the answer: 2xx returns; 408, 429, 5xx and network failures are
        retryable; any other status is permanent.

        The whole exchange ends by ``timeout`` however slowly the receiver answers; a 2xx
        status is the acknowledgement, whatever comes after it. At most ``ANSWER_LIMIT``
        bytes of the answer are read, for the error's detail.
        """
        request = requests.Request(
            "POST", url, data=body, headers={**self.session.headers, **headers}
        ).prepare()
        with Deadline(self.timeout) as deadline:
            try:
                response = adapter_for(self.session).send(
                    request,
                    stream=True,
                    timeout=self.timeout,
                    verify=True if self.session.verify is None else self.session.verify,
                    proxies=proxies_for(url),
                )
            except requests.RequestException as exc:
                cause = f"timed out after {self.timeout:g}s" if deadline.expired else None
                raise DeliveryError(self.name, cause or describe(exc, self.timeout)) from exc
            try:
                answer, complete = _read_answer(response.raw)
            except BaseException:
                response.close()
                raise
        if complete and not deadline.expired:
            response.raw.release_conn()  # the connection serves the next post
        else:
            response.close()
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_STATUS
        message = f"HTTP {status} {self.redact(one_line(response.reason or ''))[:60]}".strip()
        wait = retry_after(response.headers.get("Retry-After"))
        if wait is not None:
            message += f" (Retry-After {wait:g}s)"
        detail = "" if retryable else self._detail(response, answer)
        raise DeliveryError(
            self.name,
            f"{message}: {detail}" if detail else message,
            retryable=retryable,
            retry_after=wait,
        )

    def _detail(self, response: requests.Response, answer: bytes) -> str:
        """The start of an error answer as one line, secrets hidden (receivers often echo
        the path they were posted to, and a webhook's path is its token)."""
        if response.headers.get("Content-Encoding", "identity") != "identity":
            return ""
        try:
            text = answer.decode(response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset nobody knows
            text = answer.decode("utf-8", errors="replace")
        return self.redact(one_line(text))[:DETAIL_LIMIT]


def _read_answer(raw: urllib3.BaseHTTPResponse) -> tuple[bytes, bool]:
    """Up to ``ANSWER_LIMIT`` bytes of an answer, as they arrive, and whether that was all
    of it. The deadline ends a read that waits too long: what came is returned."""
    chunks: list[bytes] = []
    size = 0
    while size < ANSWER_LIMIT:
        try:
            chunk = raw.read1(ANSWER_LIMIT - size, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), getattr(raw, "length_remaining", None) == 0


def digest_heading(digest: Digest) -> str:
    span = f"{digest.start:%Y-%m-%d %H:%M} to {digest.end:%H:%M} UTC"
    count = len(digest.alerts)
    return f"{count} alert{'s' if count != 1 else ''}, {span}"


def more_sources(alert: Alert) -> str:
    """`` (+2 sources)`` for a story that other feeds reported too, else empty: what a
    digest adds to the story's line."""
    count = len(alert.also_reported_by)
    return f" (+{count} source{'s' if count != 1 else ''})" if count else ""


def also_reported(alert: Alert) -> str:
    """``also reported by feed-a, feed-b`` for a story that other feeds reported too."""
    others = alert.also_reported_by
    return f"also reported by {', '.join(others)}" if others else ""


def title_of(alert: Alert) -> str:
    return one_line(plain(alert.item.title)) or "(untitled)"


def summary_of(alert: Alert, limit: int = SUMMARY_LIMIT) -> str:
    return plain(alert.item.summary or alert.item.content, limit)


def excerpt_of(alert: Alert, limit: int = EXCERPT_LIMIT) -> str:
    """The sentence of the item's content around the matched words (a full_text feed's
    article): why the alert fired when the title and summary do not show it. Empty when
    the content holds none of them, or is the summary again."""
    item = alert.item
    if not item.content or item.content == item.summary:
        return ""
    return excerpt(item.content, alert.words, limit)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
