"""Who may see the pages. On a loopback address, whoever can reach it (an SSH tunnel); on any
other, only who gives ``settings.web_auth`` (HTTP basic, over the operator's TLS proxy), and
without it nobody: only /healthz and /metrics answer. When ``web_auth`` is set, it is asked
for on a loopback address too (a proxy on the same machine connects from loopback)."""

from __future__ import annotations

import hmac
import ipaddress
from enum import Enum

from werkzeug.datastructures import Authorization

from watcher.config import WebAuth


class Access(Enum):
    OPEN = "open"
    PASSWORD = "password"
    OFF = "off"


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` only takes connections from this machine."""
    host = listen.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def local_name(host: str | None) -> bool:
    """Whether a request's ``Host`` names this machine: ``localhost`` or a loopback address.
    The open pages answer only such requests: a web page the operator visits could point a
    name of its own at 127.0.0.1 (DNS rebinding) and read them from its own origin."""
    name = (host or "").strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def page_access(loopback: bool, auth: WebAuth | None) -> Access:
    if auth is not None:
        return Access.PASSWORD
    return Access.OPEN if loopback else Access.OFF


def authorized(given: Authorization | None, auth: WebAuth) -> bool:
    """Whether the request's basic credentials are ``auth``'s, compared in constant time
    (both parts always, so the time tells nothing of which was wrong)."""
    if given is None or given.type != "basic":
        return False
    user = hmac.compare_digest((given.username or "").encode(), auth.username.encode())
    secret = auth.password.get_secret_value().encode()
    password = hmac.compare_digest((given.password or "").encode(), secret)
    return user & password
