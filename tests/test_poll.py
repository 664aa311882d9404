from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import rss
from tests.servers import Route
from watcher.errors import StateError
from watcher.http import new_session
from watcher.poll import Poller
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

    def run(*, now: datetime = NOW, dry_run: bool = False, **feed_options):
        config = make_config(
            feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", **feed_options}],
            rules=[{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
            notify={"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        )
        store = open_store(config.settings.database)
        try:
            poller = Poller(
                store, new_session("t"), Matcher(config.compiled_rules()), config.settings
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
    assert (
        "poll failed: feed world: HTTP 404 Not Found (1 in a row; next try in 5min)" in caplog.text
    )
    assert poll()[0].status == "waiting"  # backing off: not fetched
    assert len(feed_server.requests) == 1
    assert poll(now=NOW + timedelta(minutes=6))[0].failures == 2
    assert "(2 in a row; next try in 10min)" in caplog.text
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "x")))
    assert poll(now=NOW + timedelta(minutes=11))[0].status == "waiting"
    assert poll(now=NOW + timedelta(minutes=17))[0].status == "new"
    assert "feed world: recovered after 2 failed polls" in caplog.text


def test_304_costs_no_parsing(poll, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss(item("1", "x")), etag='"v1"')
    assert poll()[0].status == "new"
    assert poll()[0].status == "not_modified"
    assert feed_server.requests[-1].headers["If-None-Match"] == '"v1"'


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
