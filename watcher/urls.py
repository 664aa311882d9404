"""Which http(s) URLs watcher will request: one check for configured and redirected URLs.

Stricter than requests and urllib3, so that a URL accepted here is one they request without
complaint, and so that ``urllib.parse`` (which watcher's checks use) and urllib3 (which makes
the connection) read the same host and port from it. They disagree on a backslash: urllib3
ends the host part at one, ``urllib.parse`` does not, so ``http://127.0.0.1\\@example.org/``
is ``example.org`` to one and ``127.0.0.1`` to the other. Kept free of requests and urllib3,
whose import would slow every CLI command that reads the config.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOST_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]*))?")
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_MAX_NAME = 253


def problem(url: str, *, credentials: bool = True) -> str | None:
    """Why ``url`` will not be requested, or None when it will.

    ``credentials``: whether a ``user:password@`` part is allowed (in a URL the user wrote,
    not in one a server redirects to).
    """
    if CONTROL.search(url):
        return "it contains control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it cannot be parsed"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "it is not an http:// or https:// URL"
    if "\\" in parts.netloc:
        return "its host part contains a backslash"
    if any(char.isspace() for char in parts.netloc):
        return "its host part contains a space"
    userinfo, at, host_port = parts.netloc.rpartition("@")
    if at and not credentials:
        return "it contains credentials (user:password@)"
    if at:
        try:
            unquote(userinfo).encode("latin-1")  # as requests sends them, or fails
        except UnicodeEncodeError:
            return "its credentials contain characters outside Latin-1"
    found = _HOST_PORT.fullmatch(host_port)
    if not found or not found[1]:
        return "its host part is invalid"
    if found[2]:
        port = int(found[2])
        if not 0 < port < 65536:
            return f"port {port} is out of range (1-65535)"
    return _host_problem(found[1])


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "invalid IPv6 address"
        return None
    name = ascii_host(host)
    if name is None:
        return "invalid host name"
    name = name.removesuffix(".")
    if len(name) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "invalid host name"
    return None


def ascii_host(host: str) -> str | None:
    """A host name as urllib3 sends it (requests leaves it the name urllib3 made): each
    label that is not ASCII IDNA-encoded, strictly (IDNA 2008: ``ß`` is ``xn--zca``, where
    Python's ``idna`` codec makes it ``ss``; a full-width dot is no dot). None when urllib3
    would refuse it."""
    if host.isascii():
        return host
    import idna

    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(idna.encode(label.lower(), strict=True, std3_rules=True).decode())
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    return ".".join(labels)
