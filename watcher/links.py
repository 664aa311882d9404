"""Item links: which are safe to make clickable, and the canonical form that tells that two
feeds link to the same story."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile("[\x00-\x20\x7f-\x9f\u2028\u2029]")


def safe_link(link: str) -> str:
    """The link if it is http(s), else empty: ``javascript:`` or ``data:`` is never clickable.

    Control characters and spaces are percent-encoded: a link is printed to terminals and
    logs, where an escape sequence would take over the screen. A user name and password in
    it are left out: they are never meant to be shown."""
    link = link.strip()
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    if "@" in parts.netloc:
        link = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return _UNSAFE.sub(lambda found: quote(found[0]), link)


_SECRET_PARAMETER = re.compile(
    r"(?:.*[_.-])?(?:api)?(?:key|token|secret|password|passwd|pwd|pass|auth|sig|signature"
    r"|session|sid|credentials?)",
    re.IGNORECASE,
)


def shown_url(url: str) -> str:
    """A feed's URL as the pages and ``--json`` show it: ``safe_link``'s, and the values of
    query parameters named like secrets (``key``, ``api_key``, ``token``, ``sig``, ...)
    masked: a paid feed's URL often carries its subscriber's token."""
    link = safe_link(url)
    parts = urlsplit(link)
    if not parts.query:
        return link
    query = [
        (name, "***" if value and _SECRET_PARAMETER.fullmatch(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    if all(value != "***" for _, value in query):
        return link
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def canonical_link(link: str) -> str:
    """A key for the story a link points at: no scheme, host in lower case, no default port,
    no ``utm_*`` parameters, no fragment. Empty for a link that is not http(s)."""
    try:
        parts = urlsplit(link.strip())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith("utm_")
    ]
    return urlunsplit(("", host, parts.path or "/", urlencode(query), ""))
