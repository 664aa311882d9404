"""Where watcher's HTTP connections may go, and until when.

Two limits that requests and urllib3 do not give, kept where the socket is made:

- **One deadline for a whole exchange.** A read timeout applies to each ``recv``, so a server
  that drips its status line a byte a second holds a request as long as it likes. Inside
  ``within(deadline)``, each connection attempt, the TLS handshake, the sending of the request
  and every read of the answer (status line, headers, body) waits at most until the deadline.
  Name resolution is the one step it cannot cut short: ``getaddrinfo`` has no timeout.
- **The address connected to is the address judged.** Inside ``within(..., public_only=True)``
  a new connection goes only to a global address (not loopback, private, link-local such as
  cloud metadata, shared, reserved, ...): the name is resolved once, each address is judged,
  and the socket connects to that very address, so neither a second lookup (DNS rebinding)
  nor a URL parser that reads another host than watcher's checks can steer it elsewhere. A
  pooled connection to a non-global peer is not reused there. Through a proxy the peer is
  the proxy, so the caller judges the target by name instead (``is_public_host``).

The limits travel in a context variable because they must reach the connection that urllib3
takes from its pool, two libraries down; outside ``within`` connections behave as urllib3's.
Addresses are judged once per new connection (a pooled one's peer is looked up per request),
and the deadline costs one ``settimeout`` per read of the socket.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.poolmanager import ProxyManager
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import Timeout

from watcher import urls

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_INET_ATON = frozenset("0123456789abcdefx.")
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


@dataclass(frozen=True)
class Limits:
    deadline: float
    """On the ``time.monotonic()`` clock."""
    public_only: bool = False


_limits: ContextVar[Limits | None] = ContextVar("watcher_http_limits", default=None)


@contextmanager
def within(deadline: float, *, public_only: bool = False) -> Iterator[None]:
    """Requests made in this block end by ``deadline`` (``time.monotonic()``), and with
    ``public_only`` connect to global addresses only."""
    token = _limits.set(Limits(deadline, public_only))
    try:
        yield
    finally:
        _limits.reset(token)


class AddressRefused(Exception):
    """A connection would have gone to a non-global address where only global ones may."""

    def __init__(self, host: str, address: Address | None) -> None:
        super().__init__(f"{host} is {address}")
        self.host = host
        self.address = address


def is_global(address: Address) -> bool:
    """Whether an address is on the public internet; an IPv4 address written as IPv6
    (``::ffff:127.0.0.1``) is judged as the IPv4 one it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global


def literal_address(host: str) -> Address | None:
    """The address ``host`` is when written as one, in any form a resolver reads as one:
    ``127.0.0.1``, ``[::ffff:127.0.0.1]``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, with or
    without a final dot. None for a name."""
    text = host.strip("[]").removesuffix(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and set(text.lower()) <= _INET_ATON:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def is_public_host(host: str) -> bool:
    """Whether ``host`` is surely public, judged by its name alone (for a request through a
    proxy, whose own connection cannot be judged). Anything in doubt is not: ``localhost``
    and its subdomains, a name that is not a plain DNS name, a name that does not resolve
    here, a name with any non-global address."""
    address = literal_address(host)
    if address is not None:
        return is_global(address)
    name = _ascii_name(host)
    if name is None or name == "localhost" or name.endswith(".localhost"):
        return False
    addresses = _resolve(name)
    return bool(addresses) and all(is_global(address) for address in addresses)


def is_private_host(host: str) -> bool:
    """Whether ``host`` is surely on the local network: an address that is not global,
    ``localhost``, or a name all of whose addresses are not global. A name that does not
    resolve here is not (so a feed configured on it keeps a public feed's limits)."""
    address = literal_address(host)
    if address is not None:
        return not is_global(address)
    name = _ascii_name(host)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    addresses = _resolve(name)
    return bool(addresses) and not any(is_global(address) for address in addresses)


def _ascii_name(host: str) -> str | None:
    """The name as requests sends it, lower case, without a final dot; None when it is not
    a plain DNS name."""
    name = urls.ascii_host(host)
    if name is None:
        return None
    name = name.lower().removesuffix(".")
    return name if _NAME.fullmatch(name) else None


def _resolve(name: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def _remaining(timeout: float | None, limits: Limits | None) -> float | None:
    """The socket timeout for the next step: ``timeout``, cut to what is left before the
    deadline; TimeoutError once it has passed."""
    if limits is None:
        return timeout
    left = limits.deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left if timeout is None else min(timeout, left)


class _BoundedReads(io.RawIOBase):
    """The reads of a response's socket, each one waiting at most until the deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline has passed")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    """http.client's response (status line, headers, body), read by the deadline in force
    when the request was made. Its socket file is taken apart with ``detach``, so that the
    socket stays open as long as the response needs it, as with http.client's own."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        limits = _limits.get()
        if limits is not None:
            raw = self.fp.detach()
            self.fp = io.BufferedReader(_BoundedReads(raw, sock, limits.deadline))


class _GuardedHTTPConnection(HTTPConnection):
    response_class = _BoundedResponse
    peer: Address | None = None
    """The address connected to; None through a proxy (the peer is the proxy)."""

    def _new_conn(self) -> socket.socket:
        limits = _limits.get()
        public_only = limits is not None and limits.public_only and self.proxy is None
        host = getattr(self, "_dns_host", self.host).strip("[]")
        try:
            sock, address = _connect(
                host,
                self.port,
                Timeout.resolve_default_timeout(self.timeout),
                limits,
                public_only,
                self.source_address,
                self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        self.peer = None if self.proxy else address
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        limits = _limits.get()
        if limits is not None:
            if (
                limits.public_only
                and self.sock is not None
                and self.peer is not None
                and not is_global(self.peer)
            ):
                raise AddressRefused(self.host, self.peer)
            self.timeout = _remaining(Timeout.resolve_default_timeout(self.timeout), limits)
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection, _GuardedHTTPConnection):
    """TLS on the guarded connection: the handshake runs under the socket timeout that
    ``_new_conn`` left, which ends by the deadline."""


def _connect(
    host: str,
    port: int,
    timeout: float | None,
    limits: Limits | None,
    public_only: bool,
    source_address: tuple[str, int] | None,
    options: list[tuple[int, int, int | bytes]] | None,
) -> tuple[socket.socket, Address]:
    """Resolve once; connect to the first address that is allowed and answers."""
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    refused: Address | None = None
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        host, port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        address = ipaddress.ip_address(str(sockaddr[0]))
        if public_only and not is_global(address):
            refused = address
            continue
        wait = _remaining(timeout, limits)
        sock = socket.socket(family, kind, proto)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            sock.settimeout(wait)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock, address
    if refused is not None:
        raise AddressRefused(host, refused)
    raise error or OSError("getaddrinfo returned no address")


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """requests' transport adapter, its connections (direct or through an HTTP proxy)
    honouring ``within``. Through a SOCKS proxy they are PySocks' own, which do not."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> ProxyManager:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager
