"""Hostile servers against fetch, on real loopback servers: a fetch ends by its deadline
whatever the server drips, and a public feed cannot steer watcher into the local network
(issue 10, items 9, 12, 14).

127.0.0.1 is the local network here. Where a test needs a public server, the ``internet``
fixture makes 127.0.0.2 and 127.0.0.3 count as global addresses, and ``resolver`` answers
chosen addresses for chosen names, so that the real code judges real connections.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.conftest import rss
from tests.servers import FeedServer, Route
from watcher.cycle import run_once
from watcher.errors import FetchError
from watcher.fetch import fetch
from watcher.http import _proxies, bounded_request, new_session

INTERNET = {ipaddress.IPv4Address("127.0.0.2"), ipaddress.IPv4Address("127.0.0.3")}
FEED = rss({"guid": "1", "title": "Istanbul talks"})
SLOW = 20.0
"""A bound no test comes near when the limits hold; the hostile servers outlast it."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], host: str, port: int = 0) -> Iterator[str]:
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def feed_server_on(host: str, port: int = 0) -> Iterator[FeedServer]:
    server = FeedServer()
    with serve(server.handler(), host, port) as base:
        server.base = base
        yield server


class DripServer:
    """Reads a request, then sends ``prefix`` at once and ``drip`` one byte every
    ``interval`` seconds, until the client hangs up or the test ends."""

    def __init__(self, drip: bytes, interval: float = 0.2, prefix: bytes = b"") -> None:
        self.prefix, self.drip, self.interval = prefix, drip, interval
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/feed.xml"

    def __enter__(self) -> DripServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.sendall(self.prefix)
                for byte in self.drip:
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return


HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
    b"X-Padding: dripped one byte at a time\r\nContent-Length: 6\r\n\r\n"
)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with new_session("watcher-test/1.0") as s:
        yield s


@pytest.fixture
def internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 and 127.0.0.3 count as public addresses; 127.0.0.1 stays loopback."""
    real = ipaddress.IPv4Address.is_global
    assert isinstance(real, property) and real.fget is not None
    judge = real.fget
    monkeypatch.setattr(
        ipaddress.IPv4Address, "is_global", property(lambda self: self in INTERNET or judge(self))
    )


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``resolver(name, *answers)``: each lookup of ``name`` gets the next answer (the last
    one again once they run out); returns the list of lookups made."""
    real = socket.getaddrinfo

    def plan(name: str, *answers: str) -> list[str]:
        lookups: list[str] = []

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != name:
                return real(host, port, *args, **kwargs)
            answer = answers[min(len(lookups), len(answers) - 1)]
            lookups.append(answer)
            return real(answer, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return lookups

    return plan


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """What ``call`` raised and how long it took."""
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


# Item 9: one deadline for the whole fetch


def test_a_server_dripping_its_status_line_and_headers_is_cut_off_at_the_deadline(make_config):
    with DripServer(HEADERS + b"<rss/>", interval=0.2) as server:  # 20 s of drip
        config = make_config(
            settings={"timeout": "1s"},
            feeds=[{"url": server.url, "name": "drip", "backfill": True}],
            rules=[{"name": "all", "query": "talks"}],
        )
        start = time.monotonic()
        (outcome,) = run_once(config).outcomes
        elapsed = time.monotonic() - start
    assert elapsed < 8  # the deadline and some slack; the whole drip takes 20 s
    assert outcome.error == "timed out after 1s"


def test_a_server_dripping_its_body_is_cut_off_at_the_deadline(session):
    body = b"<rss>" + b" " * 200
    headers = HEADERS.replace(b"Content-Length: 6", f"Content-Length: {len(body)}".encode())
    with DripServer(body, interval=0.05, prefix=headers) as server:  # 10 s of drip
        error, elapsed = timed(lambda: fetch(session, "drip", server.url, timeout=1))
    assert elapsed < 8
    assert isinstance(error, FetchError)
    assert error.reason == "download took longer than 1s"


def test_a_redirect_chain_is_bounded_by_one_deadline(session, feed_server):
    for n in range(4):
        feed_server.routes[f"/r{n}"] = Route(
            status=302, delay=0.8, location=feed_server.url(f"/r{n + 1}")
        )
    feed_server.routes["/r4"] = Route(FEED, delay=0.8)
    error, elapsed = timed(lambda: fetch(session, "chain", feed_server.url("/r0"), timeout=1))
    assert elapsed < 3  # each hop alone is within the timeout; the chain takes 4 s
    assert isinstance(error, FetchError)
    assert error.reason == "timed out after 1s"


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_receiver_dripping_its_answer_cannot_hold_a_bounded_request(session, part):
    """The helper notifiers post with: the same deadline over the whole exchange."""
    if part == "headers":
        server = DripServer(HEADERS.replace(b"Content-Length: 6", b"Content-Length: 2") + b"ok")
    else:
        head = HEADERS.replace(b"Content-Length: 6", b"Content-Length: 100")
        server = DripServer(b"x" * 100, interval=0.1, prefix=head)
    with server:
        error, elapsed = timed(
            lambda: bounded_request(session, "POST", server.url, data=b"{}", timeout=1)
        )
    assert elapsed < 8
    assert isinstance(error, requests.Timeout)


# Item 12: a public feed cannot reach the local network


def test_a_backslash_in_a_redirect_cannot_smuggle_a_loopback_host(session, feed_server, internet):
    feed_server.routes["/admin"] = Route(b"secret")
    port = feed_server.base.rsplit(":", 1)[1]
    with feed_server_on("127.0.0.2") as public:
        public.routes["/feed.xml"] = Route(
            status=301, location=f"http://127.0.0.1:{port}\\@public.example/admin"
        )
        with pytest.raises(FetchError) as caught:
            fetch(session, "public", public.url("/feed.xml"))
    assert caught.value.reason == "redirect refused: its host part contains a backslash"
    assert feed_server.requests == []


def test_the_address_connected_to_is_the_address_judged(session, feed_server, internet, resolver):
    """DNS rebinding: the name is public at the first lookup, loopback at the next. Only
    one lookup is made, and the connection goes to the address it gave."""
    feed_server.routes["/x"] = Route(b"secret")
    port = int(feed_server.base.rsplit(":", 1)[1])
    lookups = resolver("rebind.test", "127.0.0.3", "127.0.0.1")
    with feed_server_on("127.0.0.3", port) as decoy, feed_server_on("127.0.0.2") as public:
        decoy.routes["/x"] = Route(FEED)
        public.routes["/feed.xml"] = Route(status=302, location=f"http://rebind.test:{port}/x")
        result = fetch(session, "public", public.url("/feed.xml"))
    assert result.body == FEED
    assert feed_server.requests == []
    assert lookups == ["127.0.0.3"]


def test_a_name_that_resolves_to_loopback_is_refused_at_the_connection(
    session, feed_server, internet, resolver
):
    feed_server.routes["/x"] = Route(b"secret")
    port = int(feed_server.base.rsplit(":", 1)[1])
    lookups = resolver("intranet.test", "127.0.0.1")
    with feed_server_on("127.0.0.2") as public:
        public.routes["/feed.xml"] = Route(status=302, location=f"http://intranet.test:{port}/x")
        with pytest.raises(FetchError) as caught:
            fetch(session, "public", public.url("/feed.xml"))
    assert caught.value.reason == (
        "redirect from a public address to a non-public one refused (intranet.test at 127.0.0.1)"
    )
    assert feed_server.requests == []
    assert lookups == ["127.0.0.1"]


def test_a_pooled_connection_into_the_local_network_serves_no_public_feed(
    session, feed_server, internet, resolver
):
    """A feed the user put on the local network leaves a connection in the pool; a public
    feed redirected to the same host and port does not get to use it."""
    feed_server.routes["/mine.xml"] = Route(FEED)
    feed_server.routes["/x"] = Route(b"secret")
    port = int(feed_server.base.rsplit(":", 1)[1])
    resolver("intranet.test", "127.0.0.1")
    fetch(session, "mine", f"http://intranet.test:{port}/mine.xml")
    with feed_server_on("127.0.0.2") as public:
        public.routes["/feed.xml"] = Route(status=302, location=f"http://intranet.test:{port}/x")
        with pytest.raises(FetchError, match="to a non-public one refused"):
            fetch(session, "public", public.url("/feed.xml"))
    assert [request.path for request in feed_server.requests] == ["/mine.xml"]


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedServer]:
    """A forward proxy on loopback (it answers by the absolute URL asked for), set in
    HTTP_PROXY; ``public.test`` does not resolve here, as behind many proxies."""
    with feed_server_on("127.0.0.1") as server:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.base)
        _proxies.cache_clear()
        yield server
    _proxies.cache_clear()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1./admin",
        "http://localhost./admin",
        "http://LOCALHOST/admin",
        "http://0x7f.1/admin",
        "http://2130706433/admin",
        "http://0177.0.0.1/admin",
        "http://[::ffff:127.0.0.1]/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://unresolvable.invalid/admin",
    ],
)
def test_behind_a_proxy_a_redirect_is_judged_by_name_and_refused_in_doubt(session, proxy, target):
    proxy.routes["http://public.test/feed.xml"] = Route(status=302, location=target)
    with pytest.raises(FetchError, match="to a non-public one refused"):
        fetch(session, "public", "http://public.test/feed.xml")
    assert [request.path for request in proxy.requests] == ["http://public.test/feed.xml"]


def test_behind_a_proxy_a_redirect_to_a_public_address_is_followed(session, proxy):
    proxy.routes["http://public.test/feed.xml"] = Route(
        status=302, location="http://93.184.215.14/feed.xml"
    )
    proxy.routes["http://93.184.215.14/feed.xml"] = Route(FEED)
    assert fetch(session, "public", "http://public.test/feed.xml").body == FEED


# Item 14: a feed's control characters are not echoed


def test_a_location_with_control_characters_is_refused_and_not_echoed(session, feed_server):
    feed_server.routes["/feed.xml"] = Route(
        status=302, location=feed_server.url("/\x1b]8;;http://evil.example\x07x")
    )
    with pytest.raises(FetchError) as caught:
        fetch(session, "f", feed_server.url("/feed.xml"))
    assert caught.value.reason == "redirect refused: its Location contains control characters"


def test_a_status_reason_with_control_characters_is_not_echoed(session):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500, "\x1b[2J\x1b[31mServer error")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve(Handler, "127.0.0.1") as base, pytest.raises(FetchError) as caught:
        fetch(session, "f", f"{base}/feed.xml")
    assert caught.value.reason == "HTTP 500 [2J [31mServer error"


def test_a_feeds_own_headers_never_follow_a_redirect_to_another_site(feed_server):
    """A feed configured with an Authorization header, redirected to another host (here
    another port): the token reaches only the configured site."""
    from watcher.demo import serve_on_loopback

    elsewhere = FeedServer()
    with serve_on_loopback(elsewhere.handler()) as base:
        elsewhere.base = base
        elsewhere.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "t"}))
        feed_server.routes["/feed.xml"] = Route(b"", status=302, location=base + "/feed.xml")
        feed_server.routes["/same.xml"] = Route(b"", status=302, location="/moved.xml")
        feed_server.routes["/moved.xml"] = Route(rss({"guid": "1", "title": "t"}))
        session = new_session("t")
        token = {"Authorization": "Bearer s3cret-token"}
        fetch(session, "f", feed_server.url("/feed.xml"), headers=token, timeout=5)
        fetch(session, "f", feed_server.url("/same.xml"), headers=token, timeout=5)
    sent = {r.path: r.headers.get("Authorization") for r in feed_server.requests}
    assert sent == {
        "/feed.xml": "Bearer s3cret-token",
        "/same.xml": "Bearer s3cret-token",
        "/moved.xml": "Bearer s3cret-token",
    }
    assert [r.headers.get("Authorization") for r in elsewhere.requests] == [None]
