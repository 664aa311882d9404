"""The shared HTTP session, requests with one deadline, and errors described without URL.

``str()`` of a requests exception holds the full URL, and a notifier URL (a Slack webhook)
is a secret, so errors are described from their type and cause only.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
import urllib3

from watcher.netguard import GuardedAdapter, within

MAX_RETRY_AFTER = 86400.0
_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("Temporary failure in name resolution", "host name lookup failed"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("Connection reset", "connection reset by the server"),
    ("RemoteDisconnected", "the server closed the connection without answering"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed"),
)


def new_session(user_agent: str, pool_size: int = 16) -> requests.Session:
    """One session, and so one connection pool, shared by every request of the process.

    requests reads the proxy variables from the environment at every request (a fifth of
    the time of a 304 poll); here they are read once per host, by ``proxies_for``, and the
    CA bundle variables once, here.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.headers["User-Agent"] = user_agent
    adapter = GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 5
    return session


@functools.lru_cache(maxsize=4096)
def _proxies(origin: str) -> dict[str, str]:
    return requests.utils.get_environ_proxies(origin)


def proxies_for(url: str) -> dict[str, str]:
    """The proxies the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) gives for a URL."""
    parts = urlsplit(url)
    return _proxies(f"{parts.scheme}://{parts.netloc}")


def bounded_request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """One request, its answer read in full, all within ``timeout`` seconds: connection,
    TLS, sending, status line, headers and body, however slowly the other end drips them.
    (requests' own ``timeout`` bounds each read of the socket, not their sum.) Redirects are
    not followed. Raises what requests raises, ``requests.Timeout`` once the time is up.
    """
    deadline = time.monotonic() + timeout
    try:
        with within(deadline):
            return session.request(
                method,
                url,
                data=data,
                headers=dict(headers or {}),
                timeout=timeout,
                allow_redirects=False,
                proxies=proxies_for(url),
            )
    except requests.RequestException as exc:
        if time.monotonic() >= deadline and not isinstance(exc, requests.Timeout):
            raise requests.Timeout(f"no complete answer within {timeout:g}s") from exc
        raise


def describe(exc: Exception, timeout: float | None = None) -> str:
    """A one-line cause of a request failure (requests' or urllib3's), never including the
    URL."""
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
        return f"timed out after {timeout:g}s" if timeout else "timed out"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | urllib3.exceptions.LocationValueError,
    ):
        return "invalid URL"
    text = str(exc)
    for marker, cause in _CAUSES:
        if marker in text:
            return cause
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date
    (capped at a day; None when absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
