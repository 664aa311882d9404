from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import rss
from tests.servers import Route
from watcher.config import FeedConfig
from watcher.cycle import run_once
from watcher.errors import StateError
from watcher.http import new_session
from watcher.lanes import poll_all
from watcher.parse import parse_feed
from watcher.poll import PER_HOST, Poller, PollOutcome, Rules, host_of
from watcher.rules import Matcher
from watcher.state import open_store
from watcher.state.sqlite import SQLiteStore

NOW = datetime.now(UTC)


def item(key: str, title: str, age: timedelta = timedelta(0)) -> dict[str, str]:
    date = (NOW - age).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return {"guid": key, "title": title, "pubDate": date}


@pytest.fixture
def poll(make_config, feed_server):
    """Poll the feed served at /feed.xml with a config built from the given feed options."""
    reported: set[tuple[str, str]] = set()  # one daemon: what it reported, it remembers

    def run(*, now: datetime = NOW, dry_run: bool = False, parse=parse_feed, **feed_options):
        config = make_config(
            feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", **feed_options}],
            rules=[{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
            notify={"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        )
        store = open_store(config.settings.database)
        try:
            rules = Rules(Matcher(config.compiled_rules()), config.settings)
            poller = Poller(
                store,
                new_session("t"),
                lambda: rules,
                parse=parse,
                reported=reported,
            )
            return poller.poll(config.feeds[0], now, dry_run=dry_run), store.delivery_counts()
        finally:
            store.close()

    return run


def test_first_poll_is_a_baseline_then_new_items_alert(poll, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))
    outcome, deliveries = poll()
    assert outcome.baseline and len(outcome.new_items) == 1
    assert outcome.matches == 0 and deliveries == {}

    feed_server.routes["/feed.xml"] = Route(
        rss(item("2", "More Istanbul talks"), item("1", "Istanbul talks"))
    )
    outcome, deliveries = poll()
    assert not outcome.baseline
    assert [i.entry.key for i in outcome.new_items] == ["2"]
    assert outcome.deliveries == 1 and deliveries == {"pending": 1}

    outcome, deliveries = poll()
    assert outcome.new_items == () and deliveries == {"pending": 1}


def test_backfill_alerts_on_the_first_poll(poll, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))
    outcome, deliveries = poll(backfill=True)
    assert not outcome.baseline and deliveries == {"pending": 1}


def test_items_older_than_max_item_age_are_stored_not_alerted(poll, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss(item("old", "Istanbul talks", timedelta(days=30))))
    outcome, deliveries = poll(backfill=True)
    assert len(outcome.new_items) == 1 and outcome.matches == 0 and deliveries == {}


def test_dry_run_records_nothing(poll, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))
    outcome, deliveries = poll(backfill=True, dry_run=True)
    assert outcome.matches == 1 and deliveries == {}
    outcome, _ = poll(backfill=True)
    assert outcome.matches == 1  # the dry run did not mark the item seen


def test_failed_poll_is_recorded_and_a_later_success_resets_it(poll, feed_server, caplog):
    caplog.set_level(logging.INFO)
    outcome, _ = poll()
    assert outcome.status == "failed"
    assert outcome.error == "HTTP 404 Not Found"
    (record,) = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
    assert record.getMessage() == (
        "poll failed: feed world: HTTP 404 Not Found (1 in a row; next try in 5min)"
    )
    assert record.levelno == logging.ERROR  # someone must fix the feed or its URL
    assert poll()[0].status == "waiting"  # backing off: not fetched
    assert len(feed_server.requests) == 1
    assert poll(now=NOW + timedelta(minutes=6))[0].failures == 2
    assert "(2 in a row; next try in 10min)" in caplog.text
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "x")))
    assert poll(now=NOW + timedelta(minutes=11))[0].status == "waiting"
    assert poll(now=NOW + timedelta(minutes=17))[0].status == "new"
    assert "feed world: recovered after 2 failed polls" in caplog.text


def test_log_lines_count_one_thing_in_the_singular(poll, feed_server, caplog):
    caplog.set_level(logging.INFO)
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))
    poll()
    feed_server.routes["/feed.xml"] = Route(b"", status=500)
    poll(now=NOW + timedelta(minutes=1))
    feed_server.routes["/feed.xml"] = Route(
        rss(item("2", "More Istanbul talks"), item("1", "Istanbul talks"))
    )
    poll(now=NOW + timedelta(minutes=10))
    messages = [record.getMessage() for record in caplog.records]
    assert "feed world: first poll, 1 item stored as a baseline (not alerted)" in messages
    assert "feed world: recovered after 1 failed poll" in messages
    assert "feed world: 1 new item, 1 match, 1 delivery queued" in messages


def test_304_costs_no_parsing(poll, feed_server):
    parsed: list[str] = []

    def counted(*args):
        parsed.append(args[0])
        return parse_feed(*args)

    feed_server.routes["/feed.xml"] = Route(rss(item("1", "x")), etag='"v1"')
    assert poll(parse=counted)[0].status == "new"
    assert poll(parse=counted)[0].status == "not_modified"
    assert feed_server.requests[-1].headers["If-None-Match"] == '"v1"'
    assert parsed == ["world"]  # the 304 was not parsed


def test_a_database_failure_fails_the_poll_and_loses_nothing(
    poll, feed_server, monkeypatch, caplog
):
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))

    def full(*args, **kwargs):
        raise StateError("database w.db: database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStore, "ingest", full)
        outcome, deliveries = poll(backfill=True)
    assert outcome.status == "failed"
    assert (
        "poll failed: feed world: cannot record it in the database: database w.db: database or disk is full"
        in caplog.text
    )
    outcome, deliveries = poll(backfill=True)
    assert outcome.deliveries == 1 and deliveries == {"pending": 1}  # found again, alerted once


def test_a_poll_whose_lease_was_lost_while_it_waited_sends_and_records_nothing(
    make_config, feed_server, caplog
):
    """A poll that waited for its host's slot past its lease, while another process took
    the feed, is dropped before its request: a process never polls on a lease it lost."""
    caplog.set_level(logging.INFO)
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))
    config = make_config(
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world"}],
        rules=[{"name": "talks", "query": "Istanbul"}],
    )
    store = open_store(config.settings.database)
    try:
        rules = Rules(Matcher(config.compiled_rules()), config.settings)
        asked: list[str] = []

        def renew(name: str) -> bool:
            asked.append(name)
            return False

        poller = Poller(store, new_session("t"), lambda: rules, renew=renew)
        outcome = poller.poll(config.feeds[0], NOW)
        assert (outcome.status, asked, feed_server.requests) == ("dropped", ["world"], [])
        assert store.feed_state("world").last_success is None
        assert "feed world: its lease ran out waiting for its host" in caplog.text
        poller.renew = lambda name: True
        assert poller.poll(config.feeds[0], NOW).status == "new"
    finally:
        store.close()


def test_a_failure_that_may_pass_by_itself_is_a_warning(poll, feed_server, caplog):
    feed_server.routes["/feed.xml"] = Route(b"", status=503, headers={"Retry-After": "600"})
    outcome, _ = poll()
    assert outcome.status == "failed"
    (record,) = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
    assert record.levelno == logging.WARNING
    assert record.getMessage().endswith("(1 in a row; next try in 10min)")  # its Retry-After


def test_an_unexpected_error_fails_the_poll_which_backs_off(poll, feed_server, caplog):
    # Before, it escaped Poller.poll: `watcher once` stopped before delivering, the daemon
    # logged a traceback every interval, and `watcher feeds` showed the feed as fine
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "Istanbul talks")))

    def broken(*args):
        raise RecursionError("maximum recursion depth exceeded \x1b[2J")

    outcome, _ = poll(parse=broken)
    message = "cannot be processed, a bug (RecursionError: maximum recursion depth exceeded [2J)"
    assert (outcome.status, outcome.error, outcome.failures) == ("failed", message, 1)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
    assert (
        record.getMessage() == f"poll failed: feed world: {message} (1 in a row; next try in 5min)"
    )
    assert record.exc_info is not None  # a bug: its traceback, once
    assert poll(parse=broken)[0].status == "waiting"  # backing off
    caplog.clear()
    assert poll(now=NOW + timedelta(minutes=6), parse=broken)[0].failures == 2
    (record,) = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
    assert record.exc_info is None and "(2 in a row; next try in 10min)" in record.getMessage()
    assert poll(now=NOW + timedelta(minutes=17))[0].status == "new"  # fixed: recovers


def test_a_lone_surrogate_in_a_json_feed_is_stored(poll, feed_server):
    # SQLite refused it (UnicodeEncodeError), which escaped the poll
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", '
    body += b'"title": "Istanbul \\ud800 talks"}]}'
    feed_server.routes["/feed.xml"] = Route(body, content_type="application/feed+json")
    outcome, deliveries = poll(backfill=True)
    assert outcome.status == "new" and deliveries == {"pending": 1}
    assert outcome.new_items[0].entry.title == "Istanbul \ufffd talks"


def test_a_move_to_a_url_with_control_characters_is_refused_unechoed(poll, feed_server, caplog):
    target = feed_server.url("/new\x1b]0;PWNED\x07\x1b[2J.xml")
    feed_server.routes["/feed.xml"] = Route(b"", status=301, location=target)
    outcome = poll()[0]
    assert (outcome.status, outcome.error) == (
        "failed",
        "redirect refused: its Location contains control characters",
    )
    assert "\x1b" not in caplog.text and "\x07" not in caplog.text


def test_a_poll_reads_the_rules_once_so_a_reload_cannot_mix_them(
    make_config, feed_server, tmp_path
):
    """A reload swaps the rules between two entries of one poll: the whole poll still runs
    with the rules it started with."""
    feed_server.routes["/feed.xml"] = Route(
        rss(item("1", "Istanbul talks"), item("2", "Peskov said"), item("3", "Istanbul again"))
    )
    config = make_config(
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", "backfill": True}],
        rules=[{"name": "talks", "query": "Istanbul"}],
    )
    reloaded = make_config(
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", "backfill": True}],
        rules=[{"name": "peskov", "query": "Peskov"}],
    )
    old = Rules(Matcher(config.compiled_rules()), config.settings)
    new = Rules(Matcher(reloaded.compiled_rules()), reloaded.settings)
    handed: list[Rules] = []

    def current() -> Rules:  # each look after the first sees the reloaded config
        handed.append(old if not handed else new)
        return handed[-1]

    store = open_store(tmp_path / "one-swap.db")
    try:
        outcome = Poller(store, new_session("t"), current).poll(config.feeds[0], NOW)
    finally:
        store.close()
    matched = {item.entry.title: [m.rule for m in item.matches] for item in outcome.new_items}
    assert matched == {"Istanbul talks": ["talks"], "Peskov said": [], "Istanbul again": ["talks"]}
    assert len(handed) == 1


def polled_in_lanes(hosts: int, feeds_per_host: int, poll_time: float) -> set[int]:
    """Poll the feeds of ``hosts`` hosts (each poll only waits ``poll_time``, as across the
    internet), checking that they come back in order and that no host ever gets more than
    its share of requests at once; the threads that polled."""
    names = [f"h{n}.example.org" for n in range(hosts)]
    feeds = [
        FeedConfig(name=f"f{n}", url=f"http://{names[n % hosts]}/{n}")
        for n in range(hosts * feeds_per_host)
    ]
    at_once: dict[str, int] = dict.fromkeys(names, 0)
    most = 0
    used: set[int] = set()
    lock = threading.Lock()

    def poll(feed: FeedConfig) -> PollOutcome:
        nonlocal most
        host = host_of(feed.url)
        with lock:
            used.add(threading.get_ident())
            at_once[host] += 1
            most = max(most, at_once[host])
        time.sleep(poll_time)
        with lock:
            at_once[host] -= 1
        return PollOutcome(feed.name, "not_modified")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = poll_all(pool, 16, feeds, poll)
    assert [outcome.feed for outcome in outcomes] == [feed.name for feed in feeds]
    assert most == PER_HOST  # never more: no thread waits for a host's slot
    return used


def test_a_cycle_polls_each_hosts_feeds_at_most_per_host_at_once_in_config_order():
    """No thread of a cycle waits for a host slot: 16 threads taking turns for two slots,
    and for the interpreter lock, made a cycle of feeds on one host a tenth slower."""
    assert len(polled_in_lanes(hosts=1, feeds_per_host=40, poll_time=0.001)) >= 1


def test_a_cycle_adds_threads_while_polls_wait_for_the_network():
    """Polls that wait (as across the internet) get threads up to ``concurrency``; the
    cycle starts with two, which is what polls that answer at once need."""
    used = polled_in_lanes(hosts=8, feeds_per_host=12, poll_time=0.02)
    assert 8 < len(used) <= 16, f"{len(used)} threads for polls that only wait"


def test_once_records_its_unchanged_polls_together_and_a_refusal_fails_them(
    make_config, feed_server, monkeypatch
):
    for path in ("/feed.xml", "/other.xml"):
        feed_server.routes[path] = Route(rss(item("1", "x")), etag='"v1"')
    config = make_config(
        feeds=[
            {"url": feed_server.url("/feed.xml"), "name": "world"},
            {"url": feed_server.url("/other.xml"), "name": "other"},
        ],
        rules=[{"name": "talks", "query": "Istanbul"}],
    )
    run_once(config)  # the baseline
    written: list[list[str]] = []
    original = SQLiteStore.record_unchanged_many

    def recorded(self, polls):
        written.append(sorted(poll.name for poll in polls))
        return original(self, polls)

    monkeypatch.setattr(SQLiteStore, "record_unchanged_many", recorded)
    assert [o.status for o in run_once(config).outcomes] == ["not_modified"] * 2
    assert written == [["other", "world"]]  # after the polls, in one call

    def refused(self, polls):
        raise StateError("database w.db: database or disk is full")

    monkeypatch.setattr(SQLiteStore, "record_unchanged_many", refused)
    outcomes = run_once(config).outcomes
    assert {(o.status, o.error) for o in outcomes} == {
        ("failed", "database error: database w.db: database or disk is full")
    }
