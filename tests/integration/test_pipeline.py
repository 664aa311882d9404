"""The real pipeline, end to end: a feed server, webhook and Slack receivers and an SMTP
server, all on 127.0.0.1, driven through ``run_once`` as ``watcher once`` does."""

from __future__ import annotations

import email
import hashlib
import hmac
from email import policy

import pytest

from tests.conftest import rss
from tests.servers import Route
from watcher.cycle import run_once

STORY = {
    "guid": "story-1",
    "title": "Russia and Ukraine agree to Istanbul talks",
    "link": "https://news.example.org/istanbul",
    "description": "Kremlin spokesman Peskov confirmed the talks.",
}
PESKOV = {
    "guid": "story-2",
    "title": "Peskov on sanctions",
    "link": "https://news.example.org/peskov",
}
OTHER = {"guid": "story-3", "title": "Award season opens", "link": "https://news.example.org/award"}
OLD = {"guid": "old-1", "title": "Istanbul talks last year", "link": "https://news.example.org/old"}


@pytest.fixture
def config(make_config, feed_server, receiver, smtp_server):
    def build(*extra_feeds: dict, **settings):
        return make_config(
            settings={"timeout": "2s", **settings},
            feeds=[{"url": feed_server.url("/world.xml"), "name": "world"}, *extra_feeds],
            rules=[
                {
                    "name": "istanbul-talks",
                    "query": '"Istanbul talks" OR (Istanbul AND negotiat*)',
                    "notify": ["hook", "slack", "mail"],
                },
                {"name": "peskov", "any": ["Peskov"], "notify": ["slack"]},
            ],
            notify={
                "hook": {"type": "webhook", "url": receiver.url("/hook"), "secret": "s3cret"},
                "slack": {"type": "slack", "url": receiver.url("/slack")},
                "mail": {
                    "type": "email",
                    "to": ["desk@example.org"],
                    "from": "watcher@example.org",
                    "host": "127.0.0.1",
                    "port": smtp_server.port,
                    "security": "none",
                },
            },
        )

    return build


def test_baseline_then_alerts_everywhere_then_nothing_repeated(
    config, feed_server, receiver, smtp_server
):
    feed_server.routes["/world.xml"] = Route(rss(OLD), etag='"v1"')
    first = run_once(config())
    assert first.outcomes[0].baseline
    assert receiver.requests == [] and smtp_server.messages == []

    feed_server.routes["/world.xml"] = Route(rss(STORY, PESKOV, OTHER, OLD), etag='"v2"')
    second = run_once(config())
    assert not second.failed
    assert second.delivery.sent == 5  # story-1 matches both rules; Slack gets it under each

    (hook,) = receiver.requests_to("/hook")
    body = hook.json()
    assert body["rule"] == "istanbul-talks"
    assert body["item"]["title"] == STORY["title"]
    assert body["matched"] == ["Istanbul talks"]
    assert hook.headers["X-Watcher-Delivery"] == body["delivery_id"]
    signature = "sha256=" + hmac.new(b"s3cret", hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Watcher-Signature-256"] == signature

    slack_texts = sorted(r.json()["text"] for r in receiver.requests_to("/slack"))
    assert slack_texts == [
        "[istanbul-talks] Russia and Ukraine agree to Istanbul talks (world)",
        "[peskov] Peskov on sanctions (world)",
        "[peskov] Russia and Ukraine agree to Istanbul talks (world)",
    ]

    (envelope,) = smtp_server.messages
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    assert (
        message["Subject"] == "[watcher] istanbul-talks: Russia and Ukraine agree to Istanbul talks"
    )
    assert message["Message-ID"] == f"<{message['X-Watcher-Delivery']}@example.org>"

    third = run_once(config())
    assert third.outcomes[0].status == "not_modified"
    assert feed_server.requests[-1].headers["If-None-Match"] == '"v2"'
    assert len(receiver.requests) == 4 and len(smtp_server.messages) == 1


def test_bad_feeds_and_a_refusing_smtp_server_do_not_stop_the_rest(
    config, feed_server, receiver, smtp_server, caplog
):
    feed_server.routes["/world.xml"] = Route(rss(OTHER))
    feed_server.routes["/broken.xml"] = Route(
        b"<html><body>Not a feed</body></html>", content_type="text/html"
    )
    feed_server.routes["/empty.xml"] = Route(b"")
    feed_server.routes["/slow.xml"] = Route(rss(STORY), delay=1.5)
    bad = [
        {"url": feed_server.url("/broken.xml"), "name": "broken", "backfill": True},
        {"url": feed_server.url("/empty.xml"), "name": "empty", "backfill": True},
        {"url": feed_server.url("/missing.xml"), "name": "missing", "backfill": True},
        {"url": feed_server.url("/slow.xml"), "name": "slow", "backfill": True},
    ]
    cfg = config(*bad, timeout="0.5s")
    first = run_once(cfg)  # the baseline of world; the bad feeds fail and back off
    errors = {o.feed: o.error for o in first.outcomes if o.status == "failed"}
    assert errors == {
        "broken": "the URL serves an HTML page, not a feed",
        "empty": "the response is empty",
        "missing": "HTTP 404 Not Found",
        "slow": "timed out after 0.5s",
    }
    for feed, error in errors.items():
        assert f"poll failed: feed {feed}: {error} (1 in a row; next try in 5min)" in caplog.text

    feed_server.routes["/world.xml"] = Route(rss(STORY, PESKOV, OTHER))
    smtp_server.replies[:] = ["554 5.7.1 Message rejected"]
    requests_before = len(feed_server.requests)
    report = run_once(cfg)
    assert {o.feed: o.status for o in report.outcomes} == {
        "world": "new",
        "broken": "waiting",
        "empty": "waiting",
        "missing": "waiting",
        "slow": "waiting",
    }
    assert len(feed_server.requests) == requests_before + 1  # only world was fetched
    assert report.failed  # a dead delivery
    assert (report.delivery.sent, report.delivery.dead) == (4, 1)
    assert "delivery dead (permanent error): notifier mail: SMTP 554" in caplog.text
    assert len(receiver.requests_to("/hook")) == 1 and len(receiver.requests_to("/slack")) == 3


def test_receiver_outage_keeps_alerts_pending_until_it_recovers(
    config, feed_server, receiver, smtp_server
):
    feed_server.routes["/world.xml"] = Route(rss(OTHER))
    run_once(config(retry={"first": "0s"}))
    feed_server.routes["/world.xml"] = Route(rss(STORY, OTHER))
    receiver.default = 500
    report = run_once(config(retry={"first": "0s"}))
    assert report.delivery.retrying == 2  # hook and slack each failed once and were held back
    assert receiver.requests == []
    receiver.default = 200
    report = run_once(config(retry={"first": "0s"}))
    assert report.delivery.sent == 3  # the story reaches Slack under both rules
    assert len(receiver.requests_to("/hook")) == 1 and len(receiver.requests_to("/slack")) == 2
    assert len(smtp_server.messages) == 1  # email was never held back by the webhook outage
