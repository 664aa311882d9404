"""Delivery against real receivers on loopback: retries, Retry-After, dead letters, SMTP
outcomes, leases, rate limits, one alert per story, and the outbox commands."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import yaml
from click.testing import CliRunner

from watcher.cli import main
from watcher.config import Rate, RetrySettings, loads
from watcher.deliver import RateLimiter, deliver_due
from watcher.http import new_session, retry_after
from watcher.models import Entry
from watcher.notify import build_notifiers
from watcher.rules import Match
from watcher.state import NewItem

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
RETRY = RetrySettings(
    first=timedelta(seconds=30), max=timedelta(hours=1), give_up=timedelta(hours=24)
)


def queue(db, *keys: str, notify=("hook",), feed="world", links=None) -> int:
    items = [
        NewItem(
            Entry(
                key,
                title=f"story {key}",
                link=(links or {}).get(key, f"https://news.example.org/{key}"),
            ),
            (Match("talks", ("x",), notify),),
        )
        for key in keys
    ]
    return db.ingest(
        feed,
        f"http://x/{feed}",
        etag=None,
        last_modified=None,
        present=list(keys),
        new_items=items,
        now=NOW,
    )


def notifiers(receiver=None, smtp=None, **options):
    sections = {}
    if receiver is not None:
        sections["hook"] = {
            "type": "webhook",
            "url": receiver.url("/hook"),
            "timeout": "0.5s",
            **options,
        }
    if smtp is not None:
        sections["mail"] = {
            "type": "email",
            "to": ["desk@example.org", "chief@example.org"],
            "from": "watcher@example.org",
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
        }
    config = loads(yaml.safe_dump({"notify": sections}), "t.yaml", env={})
    return build_notifiers(config, new_session("t"))


def outbox(db):
    return {(d.notifier, d.status): d for d in db.deliveries()}


def test_retry_after_parsing():
    assert retry_after("120") == 120
    assert retry_after(None) is None
    assert retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    assert 290 <= retry_after(later) <= 300
    assert retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0
    assert retry_after("99999999") == 86400


def test_503_with_retry_after_seconds_is_honoured(db, receiver):
    queue(db, "a")
    receiver.planned[:] = [(503, {"Retry-After": "3600"})]
    report = deliver_due(db, notifiers(receiver), RETRY, NOW)
    assert report.retrying == 1
    (delivery,) = db.deliveries()
    assert delivery.status == "pending"
    assert delivery.next_attempt >= NOW + timedelta(seconds=3600)
    assert "HTTP 503" in delivery.last_error and "Retry-After 3600s" in delivery.last_error
    assert deliver_due(db, notifiers(receiver), RETRY, NOW + timedelta(minutes=59)).sent == 0
    assert deliver_due(db, notifiers(receiver), RETRY, NOW + timedelta(minutes=61)).sent == 1
    assert len(receiver.requests) == 1


def test_429_with_an_http_date_is_honoured(db, receiver):
    queue(db, "a")
    when = datetime.now(UTC) + timedelta(hours=2)
    receiver.planned[:] = [(429, {"Retry-After": format_datetime(when, usegmt=True)})]
    deliver_due(db, notifiers(receiver), RETRY, NOW)
    (delivery,) = db.deliveries()
    assert delivery.status == "pending"
    assert delivery.next_attempt >= NOW + timedelta(hours=1, minutes=59)


def test_400_is_dead_at_once_and_retry_requeues_it(db, receiver, tmp_path):
    queue(db, "a")
    receiver.planned[:] = [400]
    assert deliver_due(db, notifiers(receiver), RETRY, NOW).dead == 1
    (delivery,) = db.deliveries(failed=True)
    assert delivery.status == "dead" and delivery.last_error.startswith("HTTP 400")
    assert db.requeue([delivery.id], NOW + timedelta(days=3)) == 1
    assert deliver_due(db, notifiers(receiver), RETRY, NOW + timedelta(days=3)).sent == 1
    assert db.deliveries()[0].status == "sent"


def test_a_receiver_that_hangs_past_the_timeout_is_retried(db, receiver):
    queue(db, "a")
    receiver.delay = 1.0
    report = deliver_due(db, notifiers(receiver), RETRY, NOW)
    assert report.retrying == 1
    assert db.deliveries()[0].last_error == "timed out after 0.5s"


def test_smtp_451_then_250(db, smtp_server):
    queue(db, "a", notify=("mail",))
    smtp_server.replies[:] = ["451 4.3.0 Try again later"]
    assert deliver_due(db, notifiers(smtp=smtp_server), RETRY, NOW).retrying == 1
    assert deliver_due(db, notifiers(smtp=smtp_server), RETRY, NOW + timedelta(hours=1)).sent == 1
    assert len(smtp_server.messages) == 1


def test_smtp_550_is_dead(db, smtp_server):
    queue(db, "a", notify=("mail",))
    smtp_server.replies[:] = ["550 5.7.1 Rejected"]
    assert deliver_due(db, notifiers(smtp=smtp_server), RETRY, NOW).dead == 1
    assert db.deliveries()[0].last_error.startswith("SMTP 550")


def test_some_recipients_refused_is_reported_on_a_sent_delivery(db, smtp_server, caplog):
    queue(db, "a", notify=("mail",))
    smtp_server.refuse.add("chief@example.org")
    assert deliver_due(db, notifiers(smtp=smtp_server), RETRY, NOW).sent == 1
    (delivery,) = db.deliveries()
    assert delivery.status == "sent"
    assert delivery.last_error == "accepted, but refused for chief@example.org: 550"
    assert "refused for chief@example.org: 550" in caplog.text
    assert smtp_server.messages[0].rcpt_tos == ["desk@example.org"]


def test_every_recipient_refused_is_dead(db, smtp_server):
    queue(db, "a", notify=("mail",))
    smtp_server.refuse.update({"chief@example.org", "desk@example.org"})
    assert deliver_due(db, notifiers(smtp=smtp_server), RETRY, NOW).dead == 1


def test_a_leased_delivery_is_not_sent_by_another_pass(db, receiver):
    queue(db, "a")
    (delivery,) = db.due_deliveries(NOW, ["hook"])
    assert db.claim(delivery.id, NOW, timedelta(minutes=1))
    assert not db.claim(delivery.id, NOW, timedelta(minutes=1))
    assert deliver_due(db, notifiers(receiver), RETRY, NOW).sent == 0
    assert receiver.requests == []
    # the holder died: once its lease ran out, the delivery is taken back, under its id
    later = NOW + timedelta(minutes=2)
    assert deliver_due(db, notifiers(receiver), RETRY, later).sent == 1
    assert receiver.requests[0].headers["X-Watcher-Delivery"] == delivery.alert.delivery_id


def test_two_passes_at_once_send_each_delivery_once(db, receiver):
    queue(db, *[f"k{i}" for i in range(20)])
    receiver.delay = 0.01
    hooks = notifiers(receiver)
    threads = [threading.Thread(target=deliver_due, args=(db, hooks, RETRY, NOW)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r.headers["X-Watcher-Delivery"] for r in receiver.requests]
    assert len(ids) == 20 and len(set(ids)) == 20


def test_rate_limiter_spaces_sends():
    moments = iter([0.0, 0.0, 0.0, 0.0, 0.5, 1.0])
    limiter = RateLimiter(Rate(2, timedelta(seconds=1)), clock=lambda: next(moments))
    assert limiter.wait() == 0
    limiter.take()
    assert limiter.wait() == 0
    limiter.take()
    assert limiter.wait() == pytest.approx(0.5)
    assert limiter.wait() == 0  # half a second later, one token is back
    limiter.take()
    assert limiter.wait() == 0


def test_a_rate_limited_pass_leaves_the_rest_for_later(db, receiver):
    queue(db, "a", "b", "c")
    hooks = notifiers(receiver, rate="1/min")
    limiters = {"hook": RateLimiter(Rate(1, timedelta(minutes=1)))}
    report = deliver_due(db, hooks, RETRY, NOW, limiters=limiters)
    assert report.sent == 1
    assert [b["item"]["key"] for b in receiver.bodies()] == ["a"]
    assert db.delivery_counts() == {"pending": 2, "sent": 1}


def test_the_same_story_through_two_feeds_is_alerted_once(db):
    assert (
        queue(
            db,
            "a",
            feed="world",
            links={"a": "https://news.example.org/story?id=1&utm_source=rss#top"},
        )
        == 1
    )
    assert (
        queue(
            db, "b", feed="europe", links={"b": "http://NEWS.example.org/story?utm_medium=x&id=1"}
        )
        == 0
    )
    assert queue(db, "c", feed="europe", links={"c": "https://news.example.org/story?id=2"}) == 1
    assert db.delivery_counts() == {"pending": 2}
    match = db.recent_matches(NOW - timedelta(days=1))[-1]
    assert match.item.feed == "world"
    with db._read() as tx:
        row = tx.execute("SELECT also_in FROM matches ORDER BY id LIMIT 1").fetchone()
    assert json.loads(row[0]) == ["europe"]


def test_deliveries_and_retry_commands(db, receiver, tmp_path):
    queue(db, "a", "b")
    receiver.planned[:] = [400]
    deliver_due(db, notifiers(receiver), RETRY, NOW)
    config = tmp_path / "watch.yaml"
    config.write_text(yaml.safe_dump({"settings": {"database": str(db.path), "listen": None}}))
    runner = CliRunner()
    listing = runner.invoke(main, ["deliveries", "-c", str(config)])
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "NOTIFIER"]
    assert {line.split()[1] for line in lines[1:]} == {"sent", "dead"}
    failed = json.loads(
        runner.invoke(main, ["deliveries", "--failed", "--json", "-c", str(config)]).stdout
    )
    assert [(d["status"], d["notifier"], d["rule"]) for d in failed] == [("dead", "hook", "talks")]
    assert failed[0]["last_error"].startswith("HTTP 400")
    retried = runner.invoke(main, ["retry", str(failed[0]["id"]), "-c", str(config)])
    assert retried.exit_code == 0 and retried.stdout.startswith("1 dead delivery requeued")
    assert runner.invoke(main, ["retry", "999", "-c", str(config)]).exit_code == 1
    assert db.delivery_counts() == {"pending": 1, "sent": 1}


def test_digest_sends_one_message_per_closed_window(db, receiver, smtp_server):
    from watcher.deliver import window_start

    hour = timedelta(hours=1)
    queue(db, "a", "b", notify=("hook", "mail"))  # detected at 12:00, in the 12:00-13:00 window
    hooks = notifiers(receiver, digest="1h")
    hooks.update(notifiers(smtp=smtp_server))
    hooks["mail"].options = hooks["mail"].options.model_copy(update={"digest": hour})
    assert deliver_due(db, hooks, RETRY, NOW + timedelta(minutes=30)).sent == 0  # window open
    assert receiver.requests == [] and smtp_server.messages == []

    report = deliver_due(db, hooks, RETRY, NOW + hour)
    assert report.sent == 4
    (post,) = receiver.requests
    body = post.json()
    assert body["window"] == {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"}
    assert [alert["item"]["key"] for alert in body["alerts"]] == ["a", "b"]
    assert post.headers["X-Watcher-Delivery"] == body["digest_id"]
    (mail,) = smtp_server.messages
    assert b"Subject: [watcher] 2 alerts, 2026-11-25 12:00 to 13:00 UTC" in mail.content
    assert db.delivery_counts() == {"sent": 4}
    assert deliver_due(db, hooks, RETRY, NOW + 3 * hour).sent == 0  # an empty window sends nothing
    assert window_start(datetime(2026, 11, 25, 12, 59, tzinfo=UTC), hour) == NOW


def test_a_failed_digest_is_retried_whole_under_the_same_id(db, receiver):
    queue(db, "a", "b")
    hooks = notifiers(receiver, digest="1h")
    receiver.planned[:] = [503]
    assert deliver_due(db, hooks, RETRY, NOW + timedelta(hours=1)).retrying == 2
    assert deliver_due(db, hooks, RETRY, NOW + timedelta(hours=3)).sent == 2
    (post,) = receiver.requests
    assert [alert["item"]["key"] for alert in post.json()["alerts"]] == ["a", "b"]


def test_slack_and_discord_digest_formats():
    from watcher.models import Alert, Digest
    from watcher.notify import discord, slack

    alerts = tuple(
        Alert(
            f"d{n}",
            "talks",
            ("x",),
            "world",
            "u",
            Entry(f"k{n}", title=f"<!here> story {n}", link=f"https://n.example.org/{n}"),
            NOW,
        )
        for n in range(60)
    )
    digest = Digest("id", NOW, NOW + timedelta(hours=1), alerts)
    message = slack.digest_message(digest)
    assert message["text"] == "watcher: 60 alerts, 2026-11-25 12:00 to 13:00 UTC"
    assert len(message["blocks"]) == 47  # heading, 45 alerts, "and 15 more"
    assert "<!here>" not in json.dumps(message)
    embed = discord.digest_message(digest)["embeds"][0]
    assert len(embed["description"]) <= 4096 and "@\u200bhere" not in embed["description"]
    assert embed["description"].startswith(  # <!here> is text, shown, not dropped
        "• [\\<!here\\> story 0](https://n.example.org/0) — talks, world\n"
    )
    assert embed["description"].count("\n") == 60


def test_apprise_delivers_through_an_apprise_url(db, receiver):
    host = receiver.base.removeprefix("http://")
    config = loads(
        f'notify:\n  push: {{type: apprise, url: "json://{host}/push"}}\n', "t.yaml", env={}
    )
    push = build_notifiers(config, new_session("t"))
    queue(db, "a", notify=("push",))
    assert deliver_due(db, push, RETRY, NOW).sent == 1
    (request,) = receiver.requests
    assert request.path == "/push"
    sent = request.json()
    assert sent["title"] == "[watcher] talks: story a"
    assert "https://news.example.org/a" in sent["message"]


def test_apprise_failure_is_retried(db, receiver):
    host = receiver.base.removeprefix("http://")
    config = loads(
        f'notify:\n  push: {{type: apprise, url: "json://{host}/push"}}\n', "t.yaml", env={}
    )
    receiver.default = 500
    queue(db, "a", notify=("push",))
    assert deliver_due(db, build_notifiers(config, new_session("t")), RETRY, NOW).retrying == 1


def test_apprise_without_the_extra_is_a_clear_config_error(monkeypatch):
    import importlib.util

    from watcher.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "apprise" else real(name, *a)
    )
    with pytest.raises(ConfigError) as caught:
        loads('notify:\n  push: {type: apprise, url: "ntfy://topic"}\n', "t.yaml", env={})
    assert caught.value.problems == [
        "t.yaml:2: notify.push.type: the apprise notifier needs the extra: pip install 'watcher-feeds[apprise]'"
    ]
