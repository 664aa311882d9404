"""Receivers that attack the sender: a huge answer, an answer dripped a byte at a time, a
pause asked with Retry-After, a malformed header block, an error page that echoes the
secret path. Each runs as a real server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import socketserver
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import rss
from tests.integration.process import Output, start, wait_for
from tests.servers import Route
from watcher import logs
from watcher.cli import main
from watcher.config import RetrySettings, loads
from watcher.deliver import deliver_due
from watcher.errors import DeliveryError
from watcher.http import new_session
from watcher.models import Alert, Entry
from watcher.notify import build_notifiers
from watcher.rules import Match
from watcher.state import NewItem, Store, open_store

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SECRET = "SECRETTOKEN4711"
Plan = Callable[[BinaryIO, str], None]
"""What the receiver does once it has read a request: write to the client, given the path."""


@dataclass
class Hostile:
    """A receiver that reads each POST whole, records it, then follows the plan of its
    path's first segment, writing raw bytes (so it can also write what no HTTP server
    library would)."""

    plans: dict[str, Plan] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    written: int = 0
    """Bytes of answer written, for the plans that count them."""
    base: str = ""
    closing: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def ids(self, prefix: str) -> list[str]:
        """The delivery ids posted under a path prefix, in order of arrival."""
        return [h["x-watcher-delivery"] for path, h in self.requests if path.startswith(prefix)]

    def handle(self, rfile: BinaryIO, wfile: BinaryIO) -> None:
        request_line = rfile.readline().decode("latin-1")
        headers: dict[str, str] = {}
        while (line := rfile.readline().decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rfile.read(int(headers.get("content-length", 0)))
        path = request_line.split()[1]
        self.requests.append((path, headers))
        self.plans[path.split("/")[1]](wfile, path)

    def drip(self, wfile: BinaryIO, interval: float, answer: bytes = b"") -> None:
        """``answer``, then padding, one byte per interval until the client goes away (or
        the test ends)."""
        deadline = time.monotonic() + 60
        for byte in itertools.chain(answer, itertools.repeat(ord("a"))):
            if self.closing.is_set() or time.monotonic() > deadline:
                return
            wfile.write(bytes([byte]))
            wfile.flush()
            self.closing.wait(interval)


DRIPPED = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"


@contextmanager
def serve(handle: Callable[[BinaryIO, BinaryIO], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 calling ``handle(rfile, wfile)`` per connection; yields
    its port."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                handle(self.rfile, self.wfile)
            except OSError:
                pass  # the client hung up: what these tests want

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    receiver = Hostile()
    try:
        with serve(receiver.handle) as port:
            receiver.base = f"http://127.0.0.1:{port}"
            yield receiver
    finally:
        receiver.closing.set()


def answer(status: str, headers: dict[str, str], body: bytes = b"") -> Plan:
    def plan(wfile: BinaryIO, path: str) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return plan


def hooks(timeout: str = "1s", **urls: str) -> dict[str, Any]:
    sections = {
        name: {"type": "webhook", "url": url, "timeout": timeout} for name, url in urls.items()
    }
    config = loads(yaml.safe_dump({"notify": sections}), "t.yaml", env={})
    return build_notifiers(config, new_session("t"))


def queue(db: Store, *keys: str, notify: tuple[str, ...] = ("hook",)) -> None:
    items = [
        NewItem(Entry(key, title=f"story {key}"), (Match("talks", ("x",), notify),)) for key in keys
    ]
    db.ingest(
        "world",
        "http://x/world",
        etag=None,
        last_modified=None,
        present=list(keys),
        new_items=items,
        now=NOW,
    )


# Item 6: an answer is read a few KB at most


@pytest.mark.parametrize("status", ["400 Bad Request", "200 OK"])
def test_a_huge_answer_is_not_read(hostile, status):
    size = 64 * 1024**2

    def huge(wfile: BinaryIO, path: str) -> None:
        wfile.write(f"HTTP/1.1 {status}\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 65536
        while hostile.written < size:
            wfile.write(chunk)
            hostile.written += len(chunk)

    hostile.plans["huge"] = huge
    hook = hooks(hook=hostile.url("/huge"))["hook"]
    tracemalloc.start()
    try:
        if status.startswith("400"):
            with pytest.raises(DeliveryError) as caught:
                hook._post({"x": 1}, "d-1")
            assert not caught.value.retryable
            assert caught.value.reason == "HTTP 400 Bad Request: " + "x" * 200
        else:
            hook._post({"x": 1}, "d-1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024**2  # not 64 MB, nor its text
    assert hostile.written < size / 2  # the connection was closed, not drained


def test_an_error_page_in_an_unknown_charset_still_gives_its_detail(hostile):
    page = b"bad payload \xff"
    hostile.plans["odd"] = answer(
        "400 Bad Request", {"Content-Type": "text/plain; charset=x"}, page
    )
    with pytest.raises(DeliveryError) as caught:
        hooks(hook=hostile.url("/odd"))["hook"]._post({"x": 1}, "d-1")
    assert caught.value.reason == "HTTP 400 Bad Request: bad payload \ufffd"
    assert not caught.value.retryable


# Item 10: a slow receiver is cut at its deadline and holds back only itself


def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_deadline(hostile):
    def drip_all(wfile: BinaryIO, path: str) -> None:
        hostile.drip(wfile, 0.1, DRIPPED)  # every read is well within the 1 s timeout

    def drip_body(wfile: BinaryIO, path: str) -> None:
        wfile.write(DRIPPED)
        hostile.drip(wfile, 0.1)

    hostile.plans.update(all=drip_all, body=drip_body)
    notifiers = hooks(all=hostile.url("/all"), body=hostile.url("/body"))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        notifiers["all"]._post({"x": 1}, "d-1")
    assert caught.value.retryable and caught.value.reason == "timed out after 1s"
    notifiers["body"]._post({"x": 1}, "d-2")  # the 2xx status is the acknowledgement
    assert time.monotonic() - started < 10  # each ended by its deadline, not by the drip


def test_an_smtp_server_that_drips_is_cut_at_the_deadline():
    closing = threading.Event()

    def drip_banner(rfile: BinaryIO, wfile: BinaryIO) -> None:
        Hostile(closing=closing).drip(wfile, 0.1, b"220 slow.example.org")  # never ends

    sections = {
        "type": "email",
        "to": ["desk@example.org"],
        "from": "watcher@example.org",
        "host": "127.0.0.1",
        "security": "none",
        "timeout": "1s",
    }
    try:
        with serve(drip_banner) as port:
            config = loads(
                yaml.safe_dump({"notify": {"mail": {**sections, "port": port}}}), "t.yaml", env={}
            )
            mail = build_notifiers(config, new_session("t"))["mail"]
            started = time.monotonic()
            with pytest.raises(DeliveryError) as caught:
                mail.send(Alert("d-1", "talks", ("x",), "world", "u", Entry("k", title="t"), NOW))
            assert time.monotonic() - started < 10
    finally:
        closing.set()
    assert caught.value.retryable and caught.value.reason == "timed out after 1s"


def daemon_config(tmp_path: Path, feed: str, notify: dict[str, dict[str, Any]]) -> Path:
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": str(tmp_path / "w.db"),
                    "listen": None,
                    "interval": "1s",
                    "timeout": "2s",
                    "retry": {"first": "1s", "max": "1s"},
                },
                "feeds": [{"url": feed, "name": "world"}],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": list(notify)}],
                "notify": notify,
            }
        )
    )
    return config


def test_a_dripping_receiver_holds_back_only_itself_and_sigterm_still_stops(
    tmp_path, feed_server, receiver, hostile
):
    def drip(wfile: BinaryIO, path: str) -> None:
        hostile.drip(wfile, 0.5, DRIPPED)

    hostile.plans["drip"] = drip
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "0", "title": "Old news"}))
    notify = {
        "drip": {"type": "webhook", "url": hostile.url("/drip")},
        "healthy": {"type": "webhook", "url": receiver.url("/hook")},
    }
    process = start(daemon_config(tmp_path, feed_server.url("/feed.xml"), notify))
    output = Output(process)
    try:
        wait_for(lambda: feed_server.requests)  # the baseline
        stories: list[dict[str, str]] = []
        for n in range(1, 4):  # one story at a time: each comes in a pass of its own
            stories.insert(0, {"guid": f"s{n}", "title": f"Istanbul talks, day {n}"})
            feed_server.routes["/feed.xml"] = Route(rss(*stories))
            wait_for(lambda n=n: len(receiver.requests) == n, timeout=10)
        wait_for(lambda: hostile.requests)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=2 + 8)  # the send in flight ends by its 2 s deadline
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.close()
    assert process.returncode == 0, text
    assert took < 2 + 8
    assert [r.json()["item"]["title"] for r in receiver.requests] == [
        f"Istanbul talks, day {n}" for n in range(1, 4)
    ]
    store = open_store(tmp_path / "w.db")
    try:
        rows = sorted(store.deliveries(), key=lambda row: row.id)
    finally:
        store.close()
    dripped = [row for row in rows if row.notifier == "drip"]
    assert [row.status for row in dripped] == ["pending"] * 3  # not sent, not lost
    assert dripped[0].attempts >= 1 and dripped[0].last_error == "timed out after 2s"
    assert [row.attempts for row in dripped[1:]] == [0, 0]  # held back behind the first
    assert set(hostile.ids("/drip")) == {dripped[0].delivery_id}


# Item 11: a retry pauses the notifier; give_up counts a delivery's own failures


def test_retry_after_pauses_the_whole_notifier(db, hostile):
    hostile.plans["busy"] = answer("429 Too Many Requests", {"Retry-After": "20"})
    notifiers = hooks(hook=hostile.url("/busy"))
    queue(db, "a", "b", "c")
    retry = RetrySettings(first=timedelta(seconds=1), max=timedelta(seconds=1))
    for second in (0, 10, 15, 21, 30, 35, 42):
        deliver_due(db, notifiers, retry, NOW + timedelta(seconds=second))
    (first, *_) = sorted(db.deliveries(), key=lambda row: row.id)
    assert hostile.ids("/busy") == [first.delivery_id] * 3  # at 0, 21 and 42 s; nothing between
    assert first.next_attempt >= NOW + timedelta(seconds=62)


def test_a_delivery_held_back_is_not_dead_at_its_first_failure(db, hostile):
    hostile.plans["busy"] = answer("429 Too Many Requests", {"Retry-After": "20"})
    notifiers = hooks(hook=hostile.url("/busy"))
    queue(db, "a", "b", "c")
    retry = RetrySettings(
        first=timedelta(seconds=1), max=timedelta(seconds=1), give_up=timedelta(seconds=1)
    )
    deliver_due(db, notifiers, retry, NOW)
    deliver_due(db, notifiers, retry, NOW + timedelta(seconds=30))  # a dies, b fails once
    a, b, c = sorted(db.deliveries(), key=lambda row: row.id)
    assert (a.status, a.attempts) == ("dead", 2)
    assert (b.status, b.attempts) == ("pending", 1)  # waited 30 s, failing for 0 s
    assert (c.status, c.attempts) == ("pending", 0)


# Item 13: the notifier's URL never shows, even when the receiver echoes it


def echo_plans(hostile: Hostile) -> None:
    def bad_headers(wfile: BinaryIO, path: str) -> None:
        block = f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nEcho {path} and {hostile.base}{path}\r\n"
        wfile.write(block.encode() + b"\r\nok")

    def echo(wfile: BinaryIO, path: str) -> None:
        body = f"<h1>No hook at {path}</h1> see {hostile.base}{path}?debug=1 ({path.lower()})"
        answer(f"400 Unknown {path}", {"Content-Type": "text/html"}, body.encode())(wfile, path)

    hostile.plans.update(badheaders=bad_headers, echo=echo)


def test_an_echoed_url_is_hidden_in_errors_and_logs(db, hostile, caplog, capsys):
    echo_plans(hostile)
    notifiers = hooks(  # they answer at once: a second could run out on a busy machine
        "10s",
        bad=hostile.url(f"/badheaders/{SECRET}"),
        echo=hostile.url(f"/echo/{SECRET}?key=k-{SECRET}"),
    )
    queue(db, "a", notify=("bad", "echo"))
    logs.setup("text")
    logging.getLogger().addHandler(caplog.handler)
    try:
        caplog.set_level(logging.INFO)
        report = deliver_due(db, notifiers, RetrySettings(), NOW)
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert (report.sent, report.dead) == (1, 1)
    assert "Failed to parse headers (url=***)" in caplog.text  # the warning stays, its URL not
    (dead,) = db.deliveries(failed=True)
    assert dead.last_error.startswith("HTTP 400 Unknown ***: <h1>No hook at ***</h1> see ***")
    for text in (caplog.text, err, dead.last_error):
        assert SECRET.lower() not in text.lower()


def test_an_echoed_url_is_hidden_from_a_real_process_and_the_cli(tmp_path, feed_server, hostile):
    echo_plans(hostile)
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {"database": str(tmp_path / "w.db"), "listen": None},
                "feeds": [{"url": feed_server.url("/feed.xml"), "name": "world", "backfill": True}],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["bad", "echo"]}],
                "notify": {
                    "bad": {"type": "webhook", "url": hostile.url(f"/badheaders/{SECRET}")},
                    "echo": {"type": "webhook", "url": hostile.url(f"/echo/{SECRET}")},
                },
            }
        )
    )
    once = subprocess.run(
        [sys.executable, "-m", "watcher", "once", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(hostile.requests) == 2, once.stderr
    assert "Failed to parse headers (url=***)" in once.stderr
    runner = CliRunner()
    listing = runner.invoke(main, ["deliveries", "-c", str(config)])
    as_json = runner.invoke(main, ["deliveries", "--failed", "--json", "-c", str(config)])
    assert json.loads(as_json.stdout)[0]["last_error"].startswith("HTTP 400 Unknown ***")
    for text in (once.stdout, once.stderr, listing.stdout, as_json.stdout):
        assert SECRET.lower() not in text.lower()
