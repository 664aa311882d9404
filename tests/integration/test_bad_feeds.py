"""A corpus of broken and hostile feeds (tests/data/bad, expectations in expected.yaml) and
hostile servers: each feed gets one clear message, the others carry on, nothing leaks."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import DATA, rss
from tests.servers import Route
from watcher.cycle import run_once

BAD = DATA / "bad"
EXPECTED = yaml.safe_load((BAD / "expected.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def poll_all(make_config, feed_server):
    """Serve every file of the corpus, plus a good feed, and poll them all once."""
    for name in EXPECTED:
        feed_server.routes[f"/{name}"] = Route((BAD / name).read_bytes(), content_type="text/xml")
    feed_server.routes["/good.xml"] = Route(rss({"guid": "g", "title": "Istanbul talks"}))
    feeds = [{"url": feed_server.url(f"/{n}"), "name": n, "backfill": True} for n in EXPECTED]
    feeds.append({"url": feed_server.url("/good.xml"), "name": "good", "backfill": True})
    config = make_config(feeds=feeds, rules=[{"name": "all", "query": "talks"}])
    return {outcome.feed: outcome for outcome in run_once(config, dry_run=True).outcomes}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_bad_feed_gets_one_clear_outcome(poll_all, feed_server, name):
    outcome = poll_all[name]
    expected = EXPECTED[name]
    if "error" in expected:
        assert outcome.status == "failed"
        assert outcome.error.replace(feed_server.base, "{base}") == expected["error"]
    else:
        assert outcome.status == "new"
        assert [item.entry.title for item in outcome.new_items] == expected["titles"]
        if "links" in expected:
            assert [item.entry.link for item in outcome.new_items] == expected["links"]


def test_the_good_feed_is_unaffected(poll_all):
    assert [item.entry.title for item in poll_all["good"].new_items] == ["Istanbul talks"]


def test_nothing_of_a_local_file_leaks(poll_all):
    passwd = Path("/etc/passwd")
    first_user = passwd.read_text().split(":")[0] if passwd.exists() else "root"
    for outcome in poll_all.values():
        for item in outcome.new_items:
            assert first_user not in item.entry.title and "/etc/passwd" not in item.entry.title


def test_the_entity_blowup_is_refused_before_parsing(poll_all):
    assert poll_all["entity-blowup.xml"].status == "failed"  # and quickly: no expansion


@pytest.fixture
def poll_one(make_config, feed_server, caplog):
    caplog.set_level(logging.INFO)

    def poll(route: Route, **settings: object):
        feed_server.routes["/feed.xml"] = route
        config = make_config(
            settings=settings,
            feeds=[{"url": feed_server.url("/feed.xml"), "name": "hostile", "backfill": True}],
            rules=[{"name": "all", "query": "talks"}],
        )
        (outcome,) = run_once(config).outcomes
        return outcome

    return poll


def test_a_gzip_bomb_is_stopped_at_max_feed_size(poll_one):
    bomb = gzip.compress(b"<" + b" " * 30_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    outcome = poll_one(Route(bomb, headers={"Content-Encoding": "gzip"}), max_feed_size="1MB")
    assert outcome.error == "response larger than max_feed_size (1,000,000 bytes)"


def test_an_enormous_item_is_cut_off(poll_one):
    huge = rss({"guid": "1", "title": "talks", "description": "x" * 2_000_000})
    assert poll_one(Route(huge), max_feed_size="1MB").error.startswith("response larger than")


def test_a_dripping_server_hits_the_deadline(poll_one):
    outcome = poll_one(Route(rss({"guid": "1", "title": "talks"}), drip=0.01), timeout="0.5s")
    assert outcome.error == "download took longer than 0.5s"


def test_410_disables_the_feed(poll_one, feed_server, caplog):
    outcome = poll_one(Route(b"gone", status=410))
    assert outcome.error == "HTTP 410 Gone (the feed is gone; remove it from the config)"
    assert "feed hostile is gone (HTTP 410): no longer polled" in caplog.text
    fetched = len(feed_server.requests)
    assert poll_one(Route(b"gone", status=410)).status == "gone"
    assert len(feed_server.requests) == fetched


def test_429_retry_after_postpones_the_next_poll(poll_one, feed_server, caplog):
    poll_one(Route(b"slow down", status=429, headers={"Retry-After": "7200"}))
    assert "next try in 2h" in caplog.text


def test_a_redirect_loop_is_stopped(poll_one, feed_server):
    feed_server.routes["/other.xml"] = Route(b"", status=302, location=feed_server.url("/feed.xml"))
    outcome = poll_one(Route(b"", status=302, location=feed_server.url("/other.xml")))
    assert outcome.error == "redirect loop"


def test_a_permanent_redirect_chain_is_followed_and_reported(poll_one, feed_server, caplog):
    feed_server.routes["/a.xml"] = Route(b"", status=301, location=feed_server.url("/b.xml"))
    feed_server.routes["/b.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    outcome = poll_one(Route(b"", status=308, location=feed_server.url("/a.xml")))
    assert [item.entry.title for item in outcome.new_items] == ["Istanbul talks"]
    assert f"feed hostile moved permanently to {feed_server.url('/b.xml')}" in caplog.text


def test_a_permanent_move_is_used_by_the_next_polls(poll_one, feed_server):
    feed_server.routes["/new.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    poll_one(Route(b"", status=301, location=feed_server.url("/new.xml")))
    del feed_server.requests[:]
    outcome = poll_one(Route(b"", status=301, location=feed_server.url("/new.xml")))
    assert outcome.status == "not_modified"  # the same body as before
    assert [request.path for request in feed_server.requests] == ["/new.xml"]
