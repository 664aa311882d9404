from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from watcher.schedule import FeedScheduler
from watcher.state import ScheduledFeed


def test_due_feeds_are_polled_once_each_at_most_concurrency_at_once(db):
    now = datetime.now(UTC)
    db.sync_feeds(
        [ScheduledFeed(f"f{i}", f"http://x/{i}", timedelta(hours=1), now) for i in range(12)],
        now,
    )
    polled: list[str] = []
    in_flight: list[int] = [0, 0]
    lock = threading.Lock()
    all_done = threading.Event()

    def poll(name: str) -> None:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        threading.Event().wait(0.02)
        db.record_unchanged(name, f"http://x/{name[1:]}", now, next_poll=now + timedelta(hours=1))
        with lock:
            in_flight[0] -= 1
            polled.append(name)
            if len(polled) == 12:
                all_done.set()

    scheduler = FeedScheduler(
        db,
        "me",
        poll,
        concurrency=3,
        lease=timedelta(minutes=1),
        clock=lambda: datetime.now(UTC),
        stopping=threading.Event(),
    )
    scheduler.start()
    assert all_done.wait(10)
    threading.Event().wait(0.3)  # a second claim would have polled one again by now
    scheduler.stop()
    assert sorted(polled) == sorted(f"f{i}" for i in range(12))
    assert in_flight[1] == 3
    assert all(state.lease_owner is None for state in db.feed_states().values())
