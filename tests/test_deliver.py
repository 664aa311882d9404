from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import RetrySettings, loads
from watcher.deliver import backoff, deliver_due, failing_for
from watcher.http import new_session
from watcher.models import Entry
from watcher.notify import build_notifiers
from watcher.rules import Match
from watcher.state import NewItem

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
RETRY = RetrySettings()


def queue(db, *keys: str, notify=("hook",)) -> None:
    items = [
        NewItem(Entry(key, title=f"story {key}"), (Match("r", ("x",), notify),)) for key in keys
    ]
    db.ingest(
        "f",
        "http://x/f",
        etag=None,
        last_modified=None,
        present=list(keys),
        new_items=items,
        now=NOW,
    )


def hooks(receiver, *names: str):
    lines = [f"  {name}: {{type: webhook, url: '{receiver.url('/' + name)}'}}" for name in names]
    config = loads("notify:\n" + "\n".join(lines) + "\n", "t.yaml", env={})
    return build_notifiers(config, new_session("t"))


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(1)
    retry = RetrySettings(first=timedelta(seconds=30), max=timedelta(minutes=10))
    delays = [backoff(n, retry, rng).total_seconds() for n in range(1, 10)]
    assert 22.5 <= delays[0] <= 37.5
    assert 45 <= delays[1] <= 75
    assert all(delay <= 600 for delay in delays)
    assert delays[-1] >= 450


def test_sent_delivery_is_marked_and_not_sent_again(db, receiver):
    queue(db, "a")
    report = deliver_due(db, hooks(receiver, "hook"), RETRY, NOW)
    assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
    assert deliver_due(db, hooks(receiver, "hook"), RETRY, NOW + timedelta(hours=1)).sent == 0
    assert [body["item"]["key"] for body in receiver.bodies()] == ["a"]
    assert db.delivery_counts() == {"sent": 1}


def test_a_500_leaves_the_delivery_pending_and_the_next_pass_delivers_it_once(db, receiver):
    queue(db, "a")
    receiver.planned[:] = [500]
    first = deliver_due(db, hooks(receiver, "hook"), RETRY, NOW)
    assert (first.sent, first.retrying) == (0, 1)
    assert receiver.requests == []
    assert db.delivery_counts() == {"pending": 1}
    assert deliver_due(db, hooks(receiver, "hook"), RETRY, NOW).sent == 0  # not due yet
    later = NOW + RETRY.first * 2
    second = deliver_due(db, hooks(receiver, "hook"), RETRY, later)
    assert second.sent == 1
    assert len(receiver.requests) == 1
    assert db.delivery_counts() == {"sent": 1}


def test_a_400_is_dead_at_once(db, receiver):
    queue(db, "a")
    receiver.planned[:] = [400]
    report = deliver_due(db, hooks(receiver, "hook"), RETRY, NOW)
    assert report.dead == 1
    assert db.delivery_counts() == {"dead": 1}


def test_retryable_failures_turn_dead_after_give_up_of_failures(db, receiver):
    queue(db, "a")
    receiver.default = 503
    retry = RetrySettings(
        first=timedelta(hours=1), max=timedelta(hours=1), give_up=timedelta(hours=3)
    )
    moment = NOW + timedelta(days=2)  # detected long ago, but failing only from now on
    while db.delivery_counts() == {"pending": 1}:
        deliver_due(db, hooks(receiver, "hook"), retry, moment)
        moment += timedelta(hours=2)
    assert db.delivery_counts() == {"dead": 1}
    assert receiver.attempts == 4  # failing at 0, 1, 2 h of its schedule; dead at 3 h


def test_failing_for_follows_the_backoff_schedule():
    retry = RetrySettings(first=timedelta(seconds=30), max=timedelta(minutes=2))
    assert [failing_for(n, retry).total_seconds() for n in range(1, 6)] == [0, 30, 90, 210, 330]
    assert failing_for(1000, retry) == timedelta(seconds=90 + 120 * 997)


def test_order_kept_per_notifier_and_a_failing_one_holds_back_no_other(db, receiver):
    queue(db, "a", "b", "c", notify=("hook", "other"))
    receiver.planned_by_path["/hook"] = [200, 503]  # hook takes a, fails on b
    notifiers = hooks(receiver, "hook", "other")
    report = deliver_due(db, notifiers, RETRY, NOW)
    hook_keys = [b["item"]["key"] for b in receiver.bodies("/hook")]
    other_keys = [b["item"]["key"] for b in receiver.bodies("/other")]
    assert hook_keys == ["a"]  # c waits behind b: order is kept
    assert other_keys == ["a", "b", "c"]
    assert (report.sent, report.retrying) == (4, 1)
    deliver_due(db, notifiers, RETRY, NOW + timedelta(hours=2))
    assert [b["item"]["key"] for b in receiver.bodies("/hook")] == ["a", "b", "c"]


@pytest.mark.parametrize("count", [3])
def test_deliveries_of_a_removed_notifier_stay_pending(db, receiver, count):
    queue(db, *[f"k{i}" for i in range(count)], notify=("gone",))
    assert deliver_due(db, hooks(receiver, "hook"), RETRY, NOW).sent == 0
    assert db.delivery_counts() == {"pending": count}


def test_a_notifier_bug_is_a_retryable_failure_and_others_carry_on(db, receiver, caplog):
    queue(db, "a", notify=("hook", "other"))
    notifiers = hooks(receiver, "hook", "other")

    def broken(alert):
        raise TypeError("bug")

    notifiers["hook"].send = broken  # type: ignore[method-assign]
    report = deliver_due(db, notifiers, RETRY, NOW)
    assert (report.sent, report.retrying) == (1, 1)
    assert "notifier hook: unexpected error" in caplog.text
    assert db.delivery_counts() == {"pending": 1, "sent": 1}


def test_one_pass_sends_more_than_one_batch(db, receiver):
    queue(db, *[f"k{i}" for i in range(7)])
    report = deliver_due(db, hooks(receiver, "hook"), RETRY, NOW, batch=3)
    assert report.sent == 7
    assert [b["item"]["key"] for b in receiver.bodies()] == [f"k{i}" for i in range(7)]


def test_a_failing_notifier_does_not_loop_when_its_retry_is_due_at_once(db, receiver):
    queue(db, "a", "b")
    receiver.default = 503
    report = deliver_due(
        db, hooks(receiver, "hook"), RetrySettings(first=timedelta(0)), NOW, batch=1
    )
    assert (report.sent, report.retrying) == (0, 1)


def test_a_drain_stops_once_another_process_holds_its_notifier(db):
    import threading
    from datetime import UTC, datetime, timedelta

    from watcher.deliver import Outbox

    now = datetime.now(UTC)
    outbox = Outbox(db, lambda: None, stop=threading.Event(), clock=lambda: now, owner="A")
    assert outbox._holds("hook")  # free: taken
    assert db.claim_notifiers("B", ["hook"], now + timedelta(minutes=2), timedelta(minutes=1))
    assert not outbox._holds("hook")  # A's lease ran out and B took it: A sends no more
