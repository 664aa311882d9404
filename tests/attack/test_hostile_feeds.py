"""Feeds that froze or broke the whole daemon, on real servers: each now fails (or is read)
alone, the other feeds' alerts go out, and the daemon answers and stops."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import rss
from tests.integration.process import Output, gone, start, wait_for
from tests.servers import Route, free_port
from watcher.cycle import run_once
from watcher.http import new_session
from watcher.parse import ParserPool
from watcher.poll import Poller, Rules
from watcher.rules import Matcher
from watcher.state import open_store

JSON_FEED = "application/feed+json"


def json_feed(*items: object) -> bytes:
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "items": list(items)}
    ).encode()


def test_once_delivers_the_good_feed_beside_feeds_that_broke_the_cycle(
    make_config, feed_server, receiver
):
    # Each of these raised out of Poller.poll: `watcher once` printed a traceback and exited
    # before its delivery pass, so the good feed's alert stayed pending
    hostile = {
        "types": Route(
            json_feed(
                {"id": "t1", "title": "Istanbul talks, tagged", "tags": 5},
                {"id": "t2", "title": "Istanbul talks, authored", "authors": [{"name": 5}]},
                {
                    "id": "t3",
                    "title": "Istanbul talks of old",
                    "date_published": "0001-01-01T00:00:00+01:00",
                },
            ),
            content_type=JSON_FEED,
        ),
        "nested": Route(
            b'{"version": "https://jsonfeed.org/version/1.1", "items": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}",
            content_type=JSON_FEED,
        ),
        "charref": Route(rss({"guid": "c1", "title": "Istanbul &#99999999; talks"}) + b"<x"),
        "redirect": Route(b"", status=301, location="http://[broken/feed.xml"),
    }
    for name, route in hostile.items():
        feed_server.routes[f"/{name}"] = route
    feed_server.routes["/good.xml"] = Route(rss({"guid": "g1", "title": "Istanbul talks resume"}))
    names = ["good.xml", *hostile]
    config = make_config(
        feeds=[{"url": feed_server.url(f"/{n}"), "name": n, "backfill": True} for n in names],
        rules=[{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
        notify={"hook": {"type": "webhook", "url": receiver.url("/hook")}},
    )
    start_time = datetime.now(UTC)
    report = run_once(config)

    delivered = sorted(body["item"]["title"] for body in receiver.bodies())
    assert delivered == [
        "Istanbul talks of old",
        "Istanbul talks resume",
        "Istanbul talks, authored",
        "Istanbul talks, tagged",
        "Istanbul \ufffd talks",
    ]
    outcomes = {outcome.feed: outcome for outcome in report.outcomes}
    assert outcomes["nested"].error == "not valid JSON (nested too deep)"
    assert outcomes["redirect"].error == "redirect refused: its Location cannot be parsed"
    store = open_store(config.settings.database)
    try:
        states = store.feed_states()  # what `watcher feeds` shows
    finally:
        store.close()
    for name in ("nested", "redirect"):
        assert states[name].failures == 1 and states[name].last_error == outcomes[name].error
        assert states[name].next_poll > start_time + timedelta(minutes=4)  # backing off
    assert all(states[name].failures == 0 for name in ("good.xml", "types", "charref"))


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return 0


@pytest.mark.parametrize(
    "description",
    [
        "Istanbul " + "&lt;" * 1_000_000,  # froze the daemon: quadratic tag stripping
        "Istanbul " + "&lt;!--" * 200_000 + "&lt;script&gt;" * 100_000,
    ],
    ids=["million-lt", "unclosed-comments-and-scripts"],
)
def test_the_daemon_keeps_polling_answering_and_stopping(
    tmp_path: Path, feed_server, receiver, description
):
    # Matching held the GIL for minutes: /healthz stopped answering, the other feeds stopped
    # polling, SIGTERM was ignored, and the item, never committed, froze it again at restart
    feed_server.routes["/hostile.xml"] = Route(
        rss({"guid": "h1", "title": "Hostile", "description": description})
    )
    feed_server.routes["/good.xml"] = Route(rss({"guid": "g1", "title": "Istanbul talks"}))
    listen = f"127.0.0.1:{free_port()}"
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": str(tmp_path / "w.db"),
                    "listen": listen,
                    "interval": "1s",
                },
                "feeds": [
                    {"url": feed_server.url(f"/{n}.xml"), "name": n, "backfill": True}
                    for n in ("hostile", "good")
                ],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
            }
        )
    )
    process = start(config)
    output = Output(process)
    try:
        wait_for(lambda: len(receiver.requests) == 2, timeout=20)
        assert get(f"http://{listen}/healthz") == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log = output.close()
    items = {body["item"]["title"]: body["item"] for body in receiver.bodies()}
    assert sorted(items) == ["Hostile", "Istanbul talks"], log
    summary = items["Hostile"]["summary"]  # stored and sent cut to its size
    assert summary.startswith("Istanbul <") and len(summary) <= 100_000


def big_feed(*items: dict[str, str], padding: int = 100) -> bytes:
    extra = (
        {"guid": f"p{n}", "title": f"filler {n}", "description": "x" * 500} for n in range(padding)
    )
    body = rss(*items, *extra)
    assert len(body) >= ParserPool.SMALL  # parsed in a worker
    return body


def test_a_dead_parser_worker_is_replaced_and_a_stuck_parse_fails_its_poll(
    make_config, feed_server, caplog
):
    # Before, after one worker died every later body of 32 KB or more failed with
    # BrokenProcessPool at every poll until restart, while `watcher feeds` said ok
    config = make_config(
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world"}],
        rules=[{"name": "talks", "query": "Istanbul"}],
    )
    store = open_store(config.settings.database)
    pool = ParserPool(1)
    rules = Rules(Matcher(config.compiled_rules()), config.settings)
    poller = Poller(store, new_session("t"), lambda: rules, parse=pool.parse)
    feed = config.feeds[0]
    now = datetime.now(UTC)
    try:
        feed_server.routes["/feed.xml"] = Route(big_feed({"guid": "1", "title": "Old news"}))
        assert poller.poll(feed, now).status == "new"  # the baseline
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)  # as the OOM killer does
        wait_for(lambda: gone(pid))

        feed_server.routes["/feed.xml"] = Route(
            big_feed({"guid": "2", "title": "Istanbul talks"}, {"guid": "1", "title": "Old news"})
        )
        outcome = poller.poll(feed, now)
        assert (outcome.status, outcome.matches) == ("new", 1)
        assert pool.restarts == 1
        assert "parser workers replaced (1 so far): a parser process died" in caplog.text

        pool.deadline = 0.05  # a parse that runs past it is abandoned, its worker killed
        feed_server.routes["/feed.xml"] = Route(big_feed(padding=5000))
        outcome = poller.poll(feed, now)
        assert outcome.error == "parsing took longer than 0.05s: abandoned"
        assert store.feed_state("world").failures == 1 and pool.restarts == 2
        pool.deadline = 30
        later = now + timedelta(minutes=6)
        assert poller.poll(feed, later).status == "new"
    finally:
        pool.close()
        store.close()
