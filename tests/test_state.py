from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import watcher.state.sql
from watcher.errors import StateError
from watcher.models import Entry
from watcher.rules import Hit, Match
from watcher.state import DatabaseLock, NewItem, Store, Unchanged, open_store
from watcher.state.base import Process, ScheduledFeed

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def ingest(store: Store, feed: str, items: list[NewItem], now: datetime = NOW) -> int:
    return store.ingest(
        feed,
        f"http://example.org/{feed}",
        etag='"e"',
        last_modified=None,
        present=[item.entry.key for item in items],
        new_items=items,
        now=now,
    )


def test_sqlite_schema_is_migrated_and_recorded(db):
    connection = sqlite3.connect(db.path)
    names = [
        row[0] for row in connection.execute("SELECT name FROM _sqlite_migrations ORDER BY id")
    ]
    assert names == [
        "create_core_tables",
        "add_match_hits",
        "add_leases_and_canonical_links",
        "add_feed_health",
        "add_schedule",
        "reindex_only_text_and_mark_full_polls",
        "index_pruning_and_leases",
        "index_the_words_the_matcher_sees",
        "index_latin_spellings",
        "add_pending_articles",
        "group_matches_into_stories",
        "count_article_tries",
    ]
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    open_store(db.path).close()  # reopening applies nothing twice


def test_unseen_and_dedupe(store):
    assert store.unseen("f", ["a", "b"]) == {"a", "b"}
    ingest(store, "f", [NewItem(Entry("a")), NewItem(Entry("b"))])
    assert store.unseen("f", ["a", "b", "c"]) == {"c"}
    assert store.unseen("other", ["a"]) == {"a"}  # keys are per feed
    ingest(store, "f", [NewItem(Entry("a", title="changed"))])
    assert store.item_count("f") == 2


def test_unseen_handles_more_keys_than_one_statement_takes(store):
    keys = [f"k{i}" for i in range(1200)]
    ingest(store, "f", [NewItem(Entry(key)) for key in keys[:700]])
    assert store.unseen("f", keys) == set(keys[700:])


def test_ingest_creates_one_delivery_per_notifier(store):
    match = Match("talks", ("Istanbul",), ("slack", "mail"))
    created = ingest(store, "f", [NewItem(Entry("a", title="Istanbul"), (match,))])
    assert created == 2
    due = store.due_deliveries(NOW, ["slack", "mail"])
    assert [d.notifier for d in due] == ["slack", "mail"]
    assert due[0].alert.rule == "talks"
    assert due[0].alert.terms == ("Istanbul",)
    assert due[0].alert.item.title == "Istanbul"
    assert due[0].alert.feed_url == "http://example.org/f"
    assert due[0].alert.delivery_id != due[1].alert.delivery_id


def test_a_repeated_item_creates_no_second_delivery(store):
    match = Match("talks", ("Istanbul",), ("slack",))
    ingest(store, "f", [NewItem(Entry("a"), (match,))])
    assert ingest(store, "f", [NewItem(Entry("a"), (match,))]) == 0
    assert store.delivery_counts() == {"pending": 1}


def test_ingest_is_one_transaction(store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the disk failed")

    monkeypatch.setattr(watcher.state.sql, "_insert_match", broken)
    match = Match("talks", ("x",), ("slack",))
    with pytest.raises(RuntimeError):
        ingest(store, "f", [NewItem(Entry("a"), (match,))])
    assert store.unseen("f", ["a"]) == {"a"}  # the item was not recorded without its alert
    assert not store.feed_state("f").baseline_done


def test_feed_state_tracks_validators_and_failures(store):
    assert store.feed_state("f").baseline_done is False
    assert store.record_failure("f", "http://x", "HTTP 500", NOW) == 1
    assert store.record_failure("f", "http://x", "HTTP 500", NOW) == 2
    assert store.feed_state("f").last_error == "HTTP 500"
    ingest(store, "f", [])
    state = store.feed_state("f")
    assert (state.etag, state.baseline_done, state.failures, state.last_error) == (
        '"e"',
        True,
        0,
        None,
    )
    assert state.last_success == NOW


def test_failed_delivery_is_retried_later_or_dead(store):
    ingest(store, "f", [NewItem(Entry("a"), (Match("r", (), ("hook",)),))])
    (delivery,) = store.due_deliveries(NOW, ["hook"])
    store.mark_failed(delivery.id, "HTTP 500", retry_at=NOW + timedelta(minutes=1), now=NOW)
    assert store.due_deliveries(NOW, ["hook"]) == []
    (again,) = store.due_deliveries(NOW + timedelta(minutes=1), ["hook"])
    assert again.attempts == 1
    store.mark_failed(again.id, "HTTP 400", retry_at=None, now=NOW)
    assert store.delivery_counts() == {"dead": 1}


def test_concurrent_writers_from_threads_do_not_fail(store):
    errors: list[BaseException] = []

    def writer(feed: str) -> None:
        try:
            for n in range(20):
                ingest(store, feed, [NewItem(Entry(f"{feed}-{n}"), (Match("r", (), ("hook",)),))])
                store.record_unchanged(feed, "http://x", NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"feed{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.item_count() == 80
    assert store.delivery_counts() == {"pending": 80}


def test_database_lock_refuses_a_second_holder(tmp_path):
    first = DatabaseLock(tmp_path / "w.store")
    first.acquire()
    with pytest.raises(StateError, match="another watcher"):
        DatabaseLock(tmp_path / "w.store").acquire()
    first.release()
    second = DatabaseLock(tmp_path / "w.store")
    second.acquire()
    second.release()


def test_unusable_database_path_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot open the database"):
        open_store(blocker / "watcher.store")


def test_retention_prunes_only_items_gone_from_their_feed_without_pending_alerts(store):
    old = NOW - timedelta(days=100)
    store.ingest(
        "f",
        "http://x/f",
        etag=None,
        last_modified=None,
        present=["gone", "alerted", "pending"],
        new_items=[
            NewItem(Entry("gone")),
            NewItem(Entry("alerted"), (Match("r", ("x",), ("hook",)),)),
            NewItem(Entry("pending"), (Match("r", ("x",), ("other",)),)),
        ],
        now=old,
    )
    (sent,) = store.due_deliveries(old, ["hook"])
    store.mark_sent(sent.id, old)
    store.ingest(
        "f",
        "http://x/f",
        etag=None,
        last_modified=None,
        present=["still"],
        new_items=[NewItem(Entry("still"))],
        now=old + timedelta(days=1),
    )
    store.record_unchanged("f", "http://x/f", NOW)  # 304 today: "still" is still in the feed
    assert store.prune(NOW - timedelta(days=90)) == 2  # gone, and alerted (its delivery was sent)
    assert store.unseen("f", ["gone", "alerted", "pending", "still"]) == {"gone", "alerted"}
    assert store.delivery_counts() == {"pending": 1}


def test_a_corrupt_database_names_its_cause_never_a_failed_rollback(tmp_path):
    """Corrupt each page of a database in turn: every write that fails says why, as a
    StateError naming the file (SQLite has sometimes rolled back already; a second ROLLBACK
    then hid the cause behind "cannot rollback - no transaction is active")."""
    base = tmp_path / "base.store"
    store = open_store(base)
    items = [NewItem(Entry(f"k{i}", title="t" * 300, summary="word " * 100)) for i in range(300)]
    ingest(store, "f", items)
    store.close()
    pages = base.stat().st_size // 4096
    noise = random.Random(1)
    causes = set()
    for page in range(1, pages):
        path = tmp_path / f"copy{page}.store"
        damaged = bytearray(base.read_bytes())
        damaged[page * 4096 + 100 : page * 4096 + 400] = noise.randbytes(300)
        path.write_bytes(damaged)
        try:
            store = open_store(path)
        except StateError:
            continue
        try:
            ingest(store, "f", [NewItem(Entry(f"n{i}", title="t" * 300)) for i in range(50)])
        except StateError as exc:
            causes.add(str(exc).replace(str(path), "DB"))
        finally:
            store.close()
    assert causes
    assert all("rollback" not in cause for cause in causes), causes
    assert (
        "database DB: database disk image is malformed (the file is damaged: restore it from a backup, or move it away to start afresh)"
        in causes
    )


def test_search_on_a_corrupt_database_is_a_state_error(tmp_path):
    store = open_store(tmp_path / "w.store")
    ingest(store, "f", [NewItem(Entry(f"k{i}", title="Istanbul talks " * 50)) for i in range(100)])
    store.close()
    damaged = bytearray((tmp_path / "w.store").read_bytes())
    damaged[3 * 4096 : 9 * 4096] = b"\xff" * 6 * 4096
    (tmp_path / "w.store").write_bytes(damaged)
    store = open_store(tmp_path / "w.store")
    with pytest.raises(StateError, match=r"^database .*w\.store: .*\(the file is damaged"):
        store.search_candidates([{("istanbul", False)}], 20)
    store.close()


def scheduled(*names: str, interval: timedelta = timedelta(minutes=5)) -> list[ScheduledFeed]:
    return [
        ScheduledFeed(name, f"http://example.org/{name}", interval, NOW + timedelta(seconds=i))
        for i, name in enumerate(names)
    ]


LEASE = timedelta(minutes=1)


def test_feeds_are_claimed_when_due_earliest_first_and_once(store):
    store.sync_feeds(scheduled("a", "b", "c"), NOW)
    assert store.next_due() == NOW
    assert store.claim_feeds("p1", NOW + timedelta(seconds=1), 10, LEASE) == ["a", "b"]
    assert store.claim_feeds("p2", NOW + timedelta(seconds=5), 10, LEASE) == ["c"]
    assert store.claim_feeds("p2", NOW + timedelta(seconds=5), 10, LEASE) == []
    assert store.feed_state("a").lease_owner == "p1"


def test_a_claim_takes_at_most_its_limit(store):
    store.sync_feeds(scheduled(*"abcdef"), NOW)
    assert store.claim_feeds("p", NOW + timedelta(minutes=1), 4, LEASE) == list("abcd")
    assert store.claim_feeds("p", NOW + timedelta(minutes=1), 0, LEASE) == []


def test_recording_a_poll_sets_the_next_one_and_ends_the_lease(store):
    store.sync_feeds(scheduled("a", "b", "c"), NOW)
    store.claim_feeds("p", NOW + timedelta(seconds=5), 10, LEASE)
    later = NOW + timedelta(minutes=5)
    ingest_at = NOW + timedelta(seconds=6)
    store.ingest(
        "a",
        "http://example.org/a",
        etag=None,
        last_modified=None,
        present=[],
        new_items=[],
        now=ingest_at,
        next_poll=later,
    )
    store.record_unchanged("b", "http://example.org/b", ingest_at, next_poll=later)
    store.record_failure(
        "c", "http://example.org/c", "HTTP 500", ingest_at, retry_at=NOW + timedelta(minutes=10)
    )
    states = store.feed_states()
    assert [states[name].lease_owner for name in "abc"] == [None, None, None]
    assert [states[name].next_poll for name in "abc"] == [later, later, NOW + timedelta(minutes=10)]
    assert store.claim_feeds("p", later - timedelta(seconds=1), 10, LEASE) == []
    assert store.claim_feeds("q", later, 10, LEASE) == ["a", "b"]


def test_an_expired_lease_is_taken_over_a_live_one_never(store):
    store.sync_feeds(scheduled("a"), NOW)
    assert store.claim_feeds("dead", NOW, 10, LEASE) == ["a"]
    assert store.claim_feeds("alive", NOW + LEASE - timedelta(seconds=1), 10, LEASE) == []
    assert store.claim_feeds("alive", NOW + LEASE, 10, LEASE) == ["a"]


def test_unchanged_polls_are_recorded_together_as_one_by_one(store):
    store.sync_feeds(scheduled("a", "b"), NOW)
    store.claim_feeds("p", NOW + timedelta(seconds=5), 10, LEASE)
    store.record_failure("b", "http://example.org/b", "HTTP 500", NOW)
    later = NOW + timedelta(minutes=5)
    store.record_unchanged_many(
        [
            Unchanged("a", "http://example.org/a", NOW, '"e1"', None, None, later),
            Unchanged(
                "b", "http://example.org/b", NOW, None, "Mon", "http://example.org/b2", later
            ),
            Unchanged("new", "http://example.org/new", NOW, '"e3"', None, None, later),
            Unchanged("a2", "http://example.org/a", NOW, None, None, None, later),
        ]
    )
    states = store.feed_states()
    assert [
        (states[n].etag, states[n].last_success, states[n].next_poll) for n in ("a", "new")
    ] == [
        ('"e1"', NOW, later),
        ('"e3"', NOW, later),
    ]
    assert (states["b"].failures, states["b"].moved_to, states["b"].last_modified) == (
        0,
        "http://example.org/b2",
        "Mon",
    )
    assert states["a"].lease_owner is None and "a2" in states
    store.record_unchanged_many([])  # nothing to record: no transaction


def test_a_lease_is_renewed_only_by_the_process_that_still_holds_it(store):
    store.sync_feeds(scheduled("a"), NOW)
    assert store.claim_feeds("slow", NOW, 10, LEASE) == ["a"]
    assert store.renew_feed("slow", "a", NOW + 2 * LEASE)  # kept: no other claim before
    assert store.claim_feeds("other", NOW + LEASE, 10, LEASE) == []
    assert store.claim_feeds("other", NOW + 2 * LEASE, 10, LEASE) == ["a"]
    assert not store.renew_feed("slow", "a", NOW + 3 * LEASE)  # lost: "other" polls it


def test_feeds_no_longer_configured_are_not_claimed_and_keep_their_items(store):
    store.sync_feeds(scheduled("a", "b"), NOW)
    ingest(store, "b", [NewItem(Entry("k"))])
    store.sync_feeds(scheduled("a"), NOW)
    assert store.claim_feeds("p", NOW + timedelta(hours=1), 10, LEASE) == ["a"]
    assert store.item_count("b") == 1
    store.sync_feeds(scheduled("a", "b"), NOW + timedelta(hours=1))
    assert "b" in store.claim_feeds("p", NOW + timedelta(hours=2), 10, LEASE)


def test_a_shortened_interval_brings_the_next_poll_forward(store):
    store.sync_feeds(scheduled("a"), NOW)
    store.record_unchanged("a", "http://example.org/a", NOW, next_poll=NOW + timedelta(hours=1))
    store.sync_feeds(scheduled("a", interval=timedelta(minutes=5)), NOW)
    assert store.feed_state("a").next_poll == NOW + timedelta(minutes=5)


def test_gone_feeds_are_never_claimed(store):
    store.sync_feeds(scheduled("a"), NOW)
    store.record_failure("a", "http://example.org/a", "HTTP 410", NOW, retry_at=NOW, gone=True)
    assert store.claim_feeds("p", NOW + timedelta(days=1), 10, LEASE) == []


def test_release_gives_back_the_owners_feeds(store):
    store.sync_feeds(scheduled("a", "b"), NOW)
    store.claim_feeds("p", NOW + timedelta(seconds=5), 10, LEASE)
    store.release_feeds("p", ["a"])
    assert store.claim_feeds("q", NOW + timedelta(seconds=5), 10, LEASE) == ["a"]
    store.release_feeds("p")
    assert store.claim_feeds("q", NOW + timedelta(seconds=5), 10, LEASE) == ["b"]


def test_one_process_at_a_time_sends_a_notifiers_deliveries(store):
    assert store.claim_notifiers("p1", ["slack", "mail"], NOW, LEASE) == ["mail", "slack"]
    assert store.claim_notifiers("p2", ["slack", "mail", "hook"], NOW, LEASE) == ["hook"]
    assert store.claim_notifiers("p1", ["slack"], NOW + timedelta(seconds=30), LEASE) == ["slack"]
    expired = NOW + LEASE + timedelta(seconds=1)
    assert store.claim_notifiers("p2", ["slack", "mail"], expired, LEASE) == ["mail"]
    store.release_notifiers("p1")
    assert store.claim_notifiers("p2", ["slack"], expired, LEASE) == ["slack"]


def test_processes_are_listed_with_the_leases_they_hold(store):
    one = Process("p1", "host-a", 101, NOW, NOW)
    two = Process("p2", "host-b", 202, NOW, NOW)
    store.heartbeat(one)
    store.heartbeat(two)
    store.heartbeat(Process("p1", "host-a", 101, NOW, NOW + timedelta(seconds=10)))
    store.sync_feeds(scheduled("a", "b"), NOW)
    store.claim_feeds("p1", NOW + timedelta(seconds=5), 10, LEASE)
    store.claim_notifiers("p2", ["slack"], NOW, LEASE)
    listed = store.processes(NOW)
    assert [(p.host, p.pid, p.feeds, p.notifiers) for p in listed] == [
        ("host-a", 101, 2, 0),
        ("host-b", 202, 0, 1),
    ]
    assert listed[0].last_seen == NOW + timedelta(seconds=10)
    store.forget_process("p1")
    assert [p.id for p in store.processes(NOW)] == ["p2"]
    assert store.claim_feeds("p2", NOW + timedelta(seconds=5), 10, LEASE) == ["a", "b"]


def test_processes_starting_together_migrate_once(postgres_url):
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(open_store(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(stores) == 4
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM watcher_migrations")]
    assert sorted(names) == [
        "add_pending_articles",
        "add_schedule",
        "count_article_tries",
        "create_core_tables",
        "group_matches_into_stories",
        "index_latin_spellings",
        "index_pruning_and_leases",
        "index_the_words_the_matcher_sees",
        "mark_full_polls",
    ]
    for store in stores:
        store.close()


def test_claims_of_processes_racing_on_postgresql_never_overlap(postgres_url):
    first, second = open_store(postgres_url), open_store(postgres_url)
    first.sync_feeds(scheduled(*(f"f{i:03}" for i in range(300))), NOW)
    claimed: dict[str, list[str]] = {"p1": [], "p2": []}

    def claim(store: Store, owner: str) -> None:
        while batch := store.claim_feeds(owner, NOW + timedelta(minutes=10), 7, LEASE):
            claimed[owner].extend(batch)

    threads = [
        threading.Thread(target=claim, args=(store, owner))
        for store, owner in ((first, "p1"), (second, "p2"), (first, "p1"), (second, "p2"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = claimed["p1"] + claimed["p2"]
    assert len(both) == len(set(both)) == 300
    assert claimed["p1"] and claimed["p2"]
    first.close()
    second.close()


def test_a_database_file_deleted_or_replaced_under_the_store_is_never_written(tmp_path):
    for replace in (False, True):
        path = tmp_path / f"w{replace}.db"
        store = open_store(path)
        ingest(store, "f", [NewItem(Entry("a"))])
        path.unlink()
        if replace:
            open_store(path).close()
        with pytest.raises(StateError, match="was deleted or replaced while watcher had it open"):
            ingest(store, "f", [NewItem(Entry("b"))])
        assert "was deleted or replaced" in (store.writable() or "")
        store.close()


def test_a_full_disk_makes_the_store_unwritable_until_a_write_succeeds(tmp_path):
    script = f"""
import resource, signal
from datetime import UTC, datetime
from watcher.models import Entry
from watcher.state import NewItem, open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
store = open_store({str(tmp_path / "w.db")!r})
now = datetime.now(UTC)
def ingest(prefix):
    items = [NewItem(Entry(f"{{prefix}}{{i}}", title="t" * 5000)) for i in range(100)]
    store.ingest("f", "u", etag=None, last_modified=None, present=[], new_items=items, now=now)
print("before:", store.writable())
limit = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, limit[1]))
try:
    ingest("a")
except Exception as exc:
    print("write:", type(exc).__name__)
print("full:", store.writable())
resource.setrlimit(resource.RLIMIT_FSIZE, limit)
ingest("b")
print("after:", store.writable())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "before: None"
    assert lines[1] == "write: StateError"
    assert lines[2].startswith("full: database ") and "disk" in lines[2]
    assert lines[3] == "after: None"


def test_the_health_probe_does_not_wait_for_another_process_writing(db):
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    answers: list[str | None] = []
    probe = threading.Thread(target=lambda: answers.append(db.writable()))
    probe.start()
    probe.join(timeout=10)  # the write lock is held for good: the busy timeout is 30 s
    other.execute("ROLLBACK")
    other.close()
    assert answers == [None]


def test_next_due_is_the_earliest_time_a_claim_could_take_a_feed(store):
    store.sync_feeds(scheduled("a", "b"), NOW)
    assert store.next_due() == NOW
    store.claim_feeds("p", NOW, 1, LEASE)
    assert store.next_due() == NOW + timedelta(seconds=1)  # b; a is leased until NOW + LEASE
    store.claim_feeds("p", NOW + timedelta(seconds=1), 1, LEASE)
    assert store.next_due() == NOW + LEASE


def test_a_database_of_an_earlier_version_is_migrated_keeping_its_items(tmp_path):
    from watcher.state import sqlite as backend

    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    earlier = backend.MIGRATIONS[:4]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "MIGRATIONS", earlier)
        backend.migrate(connection)
    connection.execute(
        "INSERT INTO items (feed, key, title, first_seen, last_seen) VALUES"
        " ('f', 'a', 'Peskóv speaks', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')"
    )
    connection.close()
    store = open_store(path)
    found = store.search_candidates([{("peskov", False)}], 20)
    assert [item.entry.title for _, item in found] == ["Peskóv speaks"]
    assert store.prune(NOW) == 1  # it is not in its feed's last full poll (there was none)
    store.close()
    names = [row[0] for row in sqlite3.connect(path).execute("SELECT name FROM _sqlite_migrations")]
    assert sorted(names) == sorted(name for name, _ in backend.MIGRATIONS)


def test_deliveries_of_notifiers_gone_from_the_config_are_buried(store):
    match = Match("talks", ("x",), ("slack", "mail", "gone"))
    ingest(store, "f", [NewItem(Entry("a"), (match,))])
    (mail,) = store.due_deliveries(NOW, ["mail"])
    store.mark_sent(mail.id, NOW)
    buried = store.bury_orphans(["slack"], "notifier removed from the config", NOW)
    assert buried == {"gone": 1}
    assert store.delivery_counts() == {"pending": 1, "sent": 1, "dead": 1}
    (dead,) = store.deliveries(failed=True)
    assert (dead.notifier, dead.last_error) == ("gone", "notifier removed from the config")
    assert store.requeue([], NOW) == 1
    assert [d.notifier for d in store.due_deliveries(NOW, ["slack", "gone"])] == ["slack", "gone"]


def test_a_feed_whose_url_changed_starts_afresh_even_if_it_was_gone(store):
    store.sync_feeds(scheduled("a", "b"), NOW)
    store.record_failure("a", "http://example.org/a", "HTTP 410", NOW, retry_at=NOW, gone=True)
    later = NOW + timedelta(days=1)
    store.record_failure("b", "http://example.org/b", "HTTP 500", NOW, retry_at=later)
    moved = [
        ScheduledFeed(name, f"http://example.org/new-{name}", timedelta(minutes=5), NOW)
        for name in "ab"
    ]
    store.sync_feeds(moved, NOW)
    assert store.claim_feeds("p", NOW, 10, LEASE) == ["a", "b"]
    assert not store.feed_state("a").gone and store.feed_state("b").failures == 0


def test_a_delivery_recorded_by_one_pass_is_not_undone_by_a_late_one(store):
    match = Match("talks", ("x",), ("hook",))
    ingest(store, "f", [NewItem(Entry("a"), (match,))])
    (delivery,) = store.due_deliveries(NOW, ["hook"])
    store.mark_sent(delivery.id, NOW)  # a second pass, after the first's lease ran out
    store.mark_failed(delivery.id, "timed out", retry_at=NOW, now=NOW)  # the first, late
    store.mark_failed(delivery.id, "HTTP 400", retry_at=None, now=NOW)
    assert store.delivery_counts() == {"sent": 1}


def test_a_released_feed_can_be_put_off(store):
    store.sync_feeds(scheduled("a"), NOW)
    store.claim_feeds("p", NOW, 10, LEASE)
    store.release_feeds("p", ["a"], until=NOW + timedelta(minutes=1))
    assert store.claim_feeds("q", NOW + timedelta(seconds=59), 10, LEASE) == []
    assert store.claim_feeds("q", NOW + timedelta(minutes=1), 10, LEASE) == ["a"]


def test_one_story_ingested_by_two_feeds_at_once_alerts_once(store, monkeypatch):
    """Two polls of one story (one link, two feeds) in the same moment: the second waits
    for the first's transaction, sees its match, and makes no second delivery."""
    from watcher.state import grouping

    checked = grouping.earlier

    def slow_check(*args):
        seen = checked(*args)
        threading.Event().wait(0.5)  # both would check before either commits
        return seen

    monkeypatch.setattr(grouping, "earlier", slow_check)
    match = Match("talks", ("Istanbul",), ("hook",))

    def poll(feed: str) -> None:
        entry = Entry("k", title="Istanbul", link=f"https://news.example/story?utm_source={feed}")
        ingest(store, feed, [NewItem(entry, (match,))])

    threads = [threading.Thread(target=poll, args=(feed,)) for feed in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.delivery_counts() == {"pending": 1}


def candidates(store: Store, *clauses: set[tuple[str, bool]], limit: int = 50) -> list[str]:
    return [item.entry.key for _, item in store.search_candidates(list(clauses), limit)]


def test_search_candidates_hold_a_word_of_every_clause_newest_first(store):
    ingest(
        store,
        "f",
        [
            NewItem(Entry("talks", title="Istanbul talks")),
            NewItem(Entry("fire", summary="<p>A cease-fire in Gaza</p>")),
            NewItem(Entry("both", content="Talks on a cease fire")),
        ],
    )
    assert candidates(store, {("talks", False)}) == ["both", "talks"]
    assert candidates(store, {("talks", False)}, {("fire", False)}) == ["both"]
    assert candidates(store, {("gaza", False), ("istanbul", False)}) == ["fire", "talks"]
    assert candidates(store, {("ceas", True)}) == ["both", "fire"]
    assert candidates(store, {("ceas", False)}) == []
    assert candidates(store) == ["both", "fire", "talks"]


def test_search_candidates_are_found_by_the_words_the_matcher_sees(store):
    ingest(
        store,
        "wire",
        [
            NewItem(Entry("accent", title="Peskóv speaks")),
            NewItem(Entry("entity", summary="<b>Pesk&oacute;v</b>&nbsp;again")),
            NewItem(Entry("sharp", title="STRASSE and Straße")),
            NewItem(Entry("author", author="Dmitry Peskov", tags=("Kremlin", "Talks"))),
            NewItem(Entry("link", link="https://news.example.org/peskov-story")),
        ],
    )
    assert candidates(store, {("peskov", False)}) == ["link", "author", "entity", "accent"]
    assert candidates(store, {("strasse", False)}) == ["sharp"]
    assert candidates(store, {("kremlin", False)}) == ["author"]
    assert candidates(store, {("wire", False)}) == ["link", "author", "sharp", "entity", "accent"]
    assert candidates(store, {("b", False)}) == []  # the HTML tag is not a word


def test_search_candidates_page_by_id(store):
    ingest(store, "f", [NewItem(Entry(f"k{i}", title=f"Istanbul {i}")) for i in range(7)])
    first = store.search_candidates([{("istanbul", False)}], 3)
    ids = [item_id for item_id, _ in first]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    rest = store.search_candidates([{("istanbul", False)}], 10, before_id=ids[-1])
    assert len(rest) == 4 and max(item_id for item_id, _ in rest) < ids[-1]
    every = store.search_candidates([], 10, before_id=ids[0])
    assert [item_id for item_id, _ in every] == [*ids[1:], *(item_id for item_id, _ in rest)]


def test_search_candidates_find_a_word_longer_than_the_index_keeps(store):
    long_word = "a" * 150 + "b" * 3000
    ingest(store, "f", [NewItem(Entry("long", title=f"x {long_word} y"))])
    assert candidates(store, {(long_word, False)}) == ["long"]
    assert candidates(store, {("a" * 150 + "bbb", True)}) == ["long"]


def test_an_item_with_too_many_words_to_index_is_always_a_candidate(store, monkeypatch):
    monkeypatch.setattr(watcher.state.sql, "MAX_WORDS", 40)
    ingest(
        store,
        "f",
        [
            NewItem(Entry("short", title="Istanbul")),
            NewItem(Entry("huge", title="Peskov " + " ".join(f"w{i}" for i in range(50)))),
        ],
    )
    assert candidates(store, {("istanbul", False)}) == ["huge", "short"]
    assert candidates(store, {("nowhere", False)}) == ["huge"]


def test_a_postgresql_database_of_an_earlier_version_gets_its_words_indexed(postgres_url):
    import psycopg

    from watcher.state import postgres as backend

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "MIGRATIONS", backend.MIGRATIONS[:3])
        open_store(postgres_url).close()
    with psycopg.connect(postgres_url) as connection:
        connection.execute(
            "INSERT INTO items (feed, key, title, first_seen, last_seen) VALUES"
            " ('f', 'a', 'Peskóv speaks', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')"
        )
    store = open_store(postgres_url)
    found = store.search_candidates([{("peskov", False)}], 20)
    assert [item.entry.title for _, item in found] == ["Peskóv speaks"]
    store.close()


def test_search_candidates_reach_back_to_the_oldest_items(store, monkeypatch):
    from watcher.state import postgres

    monkeypatch.setattr(postgres, "FIRST_WINDOW", 2)  # PostgreSQL reads windows of ids
    titles = ["Peskov first", *(f"item {i}" for i in range(40)), "Peskov last"]
    ingest(store, "f", [NewItem(Entry(f"k{i}", title=title)) for i, title in enumerate(titles)])
    assert candidates(store, {("peskov", False)}) == ["k41", "k0"]
    assert candidates(store, {("peskov", False)}, limit=1) == ["k41"]
    assert candidates(store, {("item", False)}, limit=3) == ["k40", "k39", "k38"]


def feed_statuses(store: Store) -> None:
    """Feeds in each status: a ok, b failing, c new, d gone, e moved, z no longer
    configured (and so not listed, whatever its state)."""
    store.sync_feeds(scheduled("z"), NOW)
    store.record_failure("z", "http://example.org/z", "HTTP 500", NOW)
    store.sync_feeds(scheduled("a", "b", "c", "d", "e"), NOW)
    ingest(store, "a", [NewItem(Entry("1")), NewItem(Entry("2"))])
    store.record_failure("b", "http://example.org/b", "HTTP 500", NOW)
    store.record_failure("d", "http://example.org/d", "HTTP 410", NOW, gone=True)
    store.record_unchanged("e", "http://example.org/e", NOW, moved_to="http://example.org/new")


def test_feeds_are_counted_by_health_as_feed_state_says(store):
    feed_statuses(store)
    states = store.feed_states()
    assert {name: states[name].status for name in "abcde"} == {
        "a": "ok",
        "b": "failing",
        "c": "new",
        "d": "gone",
        "e": "moved",
    }
    assert store.feed_health() == {"ok": 1, "failing": 1, "new": 1, "gone": 1, "moved": 1}


def test_feed_rows_are_a_page_by_name_with_their_items_and_a_status_filter(store):
    feed_statuses(store)
    rows = store.feed_rows(limit=2)
    assert [(r.state.name, r.url, r.items) for r in rows] == [
        ("a", "http://example.org/a", 2),
        ("b", "http://example.org/b", 0),
    ]
    assert rows[1].state.last_error == "HTTP 500" and rows[1].state.failures == 1
    assert [r.state.name for r in store.feed_rows(after="b")] == ["c", "d", "e"]
    assert [r.state.name for r in store.feed_rows(status="failing")] == ["b"]
    assert [r.state.name for r in store.feed_rows(status="ok", after="a")] == []
    assert store.feed_row("z").state.failures == 1  # no longer configured, still known
    assert store.feed_row("a").items == 2
    assert store.feed_row("nope") is None


def test_deliveries_are_listed_by_status(store):
    match = Match("talks", ("x",), ("slack", "mail", "hook"))
    ingest(store, "f", [NewItem(Entry("a"), (match,))])
    _, mail, hook = store.due_deliveries(NOW, ["slack", "mail", "hook"])
    store.mark_sent(mail.id, NOW)
    store.mark_failed(hook.id, "HTTP 404", retry_at=None, now=NOW)
    assert [d.notifier for d in store.deliveries(status="sent")] == ["mail"]
    assert [d.notifier for d in store.deliveries(status="dead")] == ["hook"]
    assert [d.notifier for d in store.deliveries(status="pending")] == ["slack"]
    assert [d.notifier for d in store.deliveries(failed=True, status="pending")] == []
    assert [d.notifier for d in store.deliveries(limit=2)] == ["hook", "mail"]


def test_a_stored_time_reads_back_as_the_same_moment_in_utc():
    from datetime import timezone

    from watcher.state import from_timestamp, timestamp

    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=3)))
    assert timestamp(moment) == "2026-01-02T00:04:05.678901Z"
    back = from_timestamp(timestamp(moment))
    assert back == moment and back.tzinfo is UTC
    assert from_timestamp(None) is None and from_timestamp("") is None


# Articles of full_text feeds (issue 14): the pending items are the queue


def pending(key: str, link: str = "") -> NewItem:
    return NewItem(
        Entry(key, title=f"title {key}", link=link or f"http://news.example/{key}"), article=True
    )


def test_a_pending_item_is_stored_unmatched_and_claimed_once(store):
    ingest(store, "f", [pending("a"), NewItem(Entry("b", title="plain"))])
    assert store.unseen("f", ["a", "b"]) == set()  # the next poll does not bring it back
    claimed = store.claim_articles(NOW, 10, timedelta(minutes=1))
    assert [(item.feed, item.entry.key, item.entry.title) for item in claimed] == [
        ("f", "a", "title a")
    ]
    assert claimed[0].canonical == "//news.example/a"
    assert store.claim_articles(NOW, 10, timedelta(minutes=1)) == []  # leased
    later = NOW + timedelta(minutes=2)  # the lease ran out: its holder died
    assert [item.entry.key for item in store.claim_articles(later, 10, timedelta(minutes=1))] == [
        "a"
    ]


def test_recording_an_article_stores_its_text_and_alerts_exactly_once(store):
    ingest(store, "f", [pending("a")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=1))
    article = Entry("a", title="title a", link=item.entry.link, content="<p>Peskov said</p>")
    match = Match("r", ("Peskov",), ("n1", "n2"), ())
    assert store.record_article(item.id, "f", article, [match], NOW, fetched=True) == 2
    assert store.record_article(item.id, "f", article, [match], NOW, fetched=True) is None
    assert store.claim_articles(NOW + timedelta(hours=1), 10, timedelta(minutes=1)) == []
    assert store.delivery_counts() == {"pending": 2}
    [found] = store.search_candidates([{("peskov", False)}], 10)
    assert found[1].entry.content == "<p>Peskov said</p>"  # in the search index too
    assert store.fetched_article("//news.example/a") == "<p>Peskov said</p>"


def test_a_failed_article_keeps_the_feed_text_and_is_not_reused(store):
    ingest(store, "f", [pending("a")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=1))
    assert store.record_article(item.id, "f", item.entry, [], NOW, fetched=False) == 0
    assert store.fetched_article("//news.example/a") is None
    assert store.claim_articles(NOW + timedelta(hours=1), 10, timedelta(minutes=1)) == []


def test_items_of_one_story_are_claimed_together_and_alert_once(store):
    link = "http://news.example/story?utm_source=x"
    ingest(store, "f1", [pending("a", link)])
    ingest(store, "f2", [pending("b", "http://news.example/story")])
    claimed = store.claim_articles(NOW, 1, timedelta(minutes=1))
    assert sorted(item.feed for item in claimed) == ["f1", "f2"]
    match = Match("r", ("Peskov",), ("n",), ())
    created = [
        store.record_article(item.id, item.feed, item.entry, [match], NOW, fetched=True)
        for item in claimed
    ]
    assert created == [1, 0]  # the second report of the story is recorded, not alerted


def test_released_articles_are_claimed_again_when_due(store):
    ingest(store, "f", [pending("a")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    store.release_articles([item.id], until=NOW + timedelta(minutes=1))
    assert store.claim_articles(NOW, 10, timedelta(minutes=1)) == []
    assert len(store.claim_articles(NOW + timedelta(minutes=1), 10, timedelta(minutes=1))) == 1


def test_a_failed_try_of_an_article_is_counted_and_a_plain_release_is_not(store):
    ingest(store, "f", [pending("a")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    assert item.tries == 0
    store.release_articles([item.id], tried=True)
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    store.release_articles([item.id], tried=True)
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    store.release_articles([item.id])  # given back unfetched (a feed another process has)
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    assert item.tries == 2


def test_a_restart_keeps_the_wait_of_an_article_to_be_tried_again(store):
    ingest(store, "f", [pending("a")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    store.release_articles([item.id], until=NOW + timedelta(minutes=5), tried=True)
    store.release_leases()
    assert store.claim_articles(NOW, 10, timedelta(minutes=1)) == []
    assert len(store.claim_articles(NOW + timedelta(minutes=5), 10, timedelta(minutes=1))) == 1


def test_an_item_of_a_story_waiting_for_another_try_waits_with_it(store):
    """A page that failed is not fetched again sooner because another feed's item of the
    same story came in meanwhile."""
    ingest(store, "f1", [pending("a", "http://news.example/story")])
    [item] = store.claim_articles(NOW, 10, timedelta(minutes=10))
    store.release_articles([item.id], until=NOW + timedelta(minutes=5), tried=True)
    ingest(store, "f2", [pending("b", "http://news.example/story?utm_source=x")])
    ingest(store, "f3", [pending("c", "http://news.example/other")])
    assert [i.feed for i in store.claim_articles(NOW, 10, timedelta(hours=1))] == ["f3"]
    later = store.claim_articles(NOW + timedelta(minutes=5), 10, timedelta(minutes=1))
    assert sorted(i.feed for i in later) == ["f1", "f2"]


def test_pending_articles_of_feeds_no_longer_configured_are_not_claimed(store):
    ingest(store, "f", [pending("a")])
    store.sync_feeds(scheduled("other"), NOW)
    assert store.claim_articles(NOW, 10, timedelta(minutes=1)) == []


def test_a_restart_gives_back_the_articles_a_dead_process_held(store):
    ingest(store, "f", [pending("a")])
    assert store.claim_articles(NOW, 10, timedelta(hours=1))
    store.release_leases()
    assert len(store.claim_articles(NOW, 10, timedelta(hours=1))) == 1


def test_processes_racing_for_articles_on_postgresql_never_claim_one_twice(postgres_url):
    stores = [open_store(postgres_url) for _ in range(4)]
    try:
        ingest(stores[0], "f", [pending(str(i)) for i in range(60)])
        claimed: list[list[int]] = [[] for _ in stores]

        def claim(index: int) -> None:
            while items := stores[index].claim_articles(NOW, 3, timedelta(minutes=5)):
                claimed[index] += [item.id for item in items]

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [item for ids in claimed for item in ids]
        assert len(every) == len(set(every)) == 60
    finally:
        for opened in stores:
            opened.close()


# stories: reports of one event from several outlets alert a rule once

STORY_WINDOW = timedelta(hours=24)
PESKOV = Match(
    "peskov",
    ("Peskov",),
    ("hook",),
    (Hit("Peskov", "title", ("peskov",)),),
    STORY_WINDOW,
)


def report(key: str, title: str, lead: str = "", *, link: str | None = None) -> NewItem:
    entry = Entry(key, title=title, link=link or f"https://{key}.example/1", summary=lead)
    return NewItem(entry, (PESKOV,))


TRUCE = (
    "Kremlin rejects energy truce plan, Peskov says",
    "Kremlin spokesman Dmitry Peskov said Moscow rejected the 30-day energy truce proposed"
    " by Washington and Kyiv on Monday.",
)
TRUCE_RETOLD = (
    "Peskov: Russia says no to 30-day energy ceasefire",
    "Russia will not accept the US-Ukrainian proposal for a 30-day halt to strikes on"
    " energy sites, Dmitry Peskov told reporters.",
)
CALL = (
    "Putin and Trump to speak by phone on Tuesday - Peskov",
    "A telephone conversation between Vladimir Putin and Donald Trump is planned for"
    " Tuesday, Kremlin spokesman Dmitry Peskov said.",
)


def test_a_report_of_an_alerted_story_joins_it_and_sends_nothing(store):
    assert ingest(store, "tass", [report("a", *TRUCE)]) == 1
    later = NOW + timedelta(hours=1)
    assert ingest(store, "reuters", [report("b", *TRUCE_RETOLD)], later) == 0
    assert ingest(store, "meduza", [report("c", *CALL)], later) == 1  # another event
    assert store.delivery_counts() == {"pending": 2}
    truce, call = sorted(store.stories(NOW - timedelta(days=1)), key=lambda story: story.id)
    assert [r.item.entry.key for r in truce.reports] == ["a", "b"]
    assert truce.outlets == ("tass", "reuters")
    assert (truce.rule, truce.first_seen, truce.last_seen) == ("peskov", NOW, later)
    assert [r.deliveries for r in truce.reports] == [("hook:pending",), ()]
    assert {r.story for r in truce.reports} == {truce.id}
    assert [r.item.entry.key for r in call.reports] == ["c"]
    assert store.story(truce.id) == truce
    assert store.story(truce.id + call.id + 100) is None
    (matched,) = store.recent_matches(later, "peskov", limit=1)
    assert matched.item.entry.key == "c"


def test_the_alert_of_a_story_carries_the_reports_grouped_into_it(store):
    ingest(store, "tass", [report("a", *TRUCE)])
    ingest(store, "reuters", [report("b", *TRUCE_RETOLD)], NOW + timedelta(minutes=5))
    (delivery,) = store.due_deliveries(NOW + timedelta(minutes=5), ["hook"])
    story = delivery.alert.story
    assert story is not None
    assert [(r.feed, r.title) for r in story.reports] == [
        ("tass", TRUCE[0]),
        ("reuters", TRUCE_RETOLD[0]),
    ]
    assert delivery.alert.also_reported_by == ("reuters",)


def test_without_a_story_window_every_report_alerts(store):
    alone = PESKOV._replace(stories=None)
    items = [report("a", *TRUCE), report("b", *TRUCE_RETOLD)]
    assert ingest(store, "f", [NewItem(item.entry, (alone,)) for item in items]) == 2
    assert [len(s.reports) for s in store.stories(NOW - timedelta(days=1))] == [1, 1]


def test_a_story_closes_after_its_window_and_a_later_report_opens_another(store):
    """A story that runs for days: grouped within the window from its first alert, then a
    new story (and a new alert), which takes the reports after it."""
    assert ingest(store, "a", [report("1", *TRUCE)]) == 1
    assert ingest(store, "b", [report("2", *TRUCE_RETOLD)], NOW + timedelta(hours=20)) == 0
    assert ingest(store, "c", [report("3", *TRUCE)], NOW + timedelta(hours=25)) == 1
    assert ingest(store, "d", [report("4", *TRUCE_RETOLD)], NOW + timedelta(hours=40)) == 0
    found = store.stories(NOW - timedelta(days=1))
    assert sorted([r.item.feed for r in s.reports] for s in found) == [["a", "b"], ["c", "d"]]


def test_a_link_seen_in_another_feed_is_a_report_of_the_first_ones_story(store):
    link = "https://news.example/story?id=1"
    ingest(store, "one", [report("a", "Peskov speaks", link=link + "&utm_source=rss")])
    assert ingest(store, "two", [report("b", "Peskov speaks", link=link)]) == 0
    (story,) = store.stories(NOW - timedelta(days=1))
    assert story.outlets == ("one", "two")


def test_a_link_seen_again_indexes_and_counts_only_the_words_its_story_did_not_hold(store):
    """A word in too many of the rule's stories is counted, not looked up by. The story
    of a link seen again in another feed knew its words from its index alone, so such a
    word was counted a second time for one story; and its new words must be indexed (the
    report's own match is not one of the story's reports yet when they are read)."""
    for n in range(6):  # "tanker" in six stories, more than a word is looked up in
        ingest(store, "wire", [report(f"t{n}", f"Peskov on tanker case {n} of Zorglub{n}")])
    link = "https://news.example/tanker"
    ingest(store, "one", [report("a", "Peskov on seized tanker Quokka", link=link)])
    retold = report("b", "Peskov on seized tanker Quokka in Wombatville harbour", link=link)
    ingest(store, "two", [retold])
    with store._read() as tx:
        counted = tx.execute(
            "SELECT sum(stories) FROM story_words WHERE rule = 'peskov' AND word = 'tanker'"
        ).fetchone()[0]
        keys = {row[0] for row in tx.execute("SELECT word FROM story_keys").fetchall()}
    assert counted == 7
    assert {"quokka", "wombatvill", "harbour"} <= keys


def test_two_reports_of_one_story_ingested_at_once_alert_once(store, monkeypatch):
    """Two processes (here two connections) ingest two outlets' reports of one story in the
    same moment: the decision is made under a lock scoped to the rule, so the second waits
    for the first's transaction, finds its story and sends nothing."""
    from watcher.state import grouping

    find = grouping.find

    def slow_find(*args, **kwargs):
        found = find(*args, **kwargs)
        threading.Event().wait(0.5)  # both would look before either commits
        return found

    monkeypatch.setattr(grouping, "find", slow_find)
    second = open_store(store.url) if hasattr(store, "url") else store
    told = {"tass": report("a", *TRUCE), "reuters": report("b", *TRUCE_RETOLD)}
    threads = [
        threading.Thread(target=ingest, args=(each, feed, [told[feed]]))
        for each, feed in ((store, "tass"), (second, "reuters"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if second is not store:
        second.close()
    assert store.delivery_counts() == {"pending": 1}
    (story,) = store.stories(NOW - timedelta(days=1))
    assert len(story.reports) == 2


def test_pruning_forgets_stories_whose_reports_are_gone(store):
    ingest(store, "f", [report("a", *TRUCE)])
    (delivery,) = store.due_deliveries(NOW, ["hook"])
    store.mark_sent(delivery.id, NOW)
    ingest(store, "f", [], NOW + timedelta(days=100))  # the item left the feed
    assert store.prune(NOW + timedelta(days=50)) == 1
    assert store.stories(NOW - timedelta(days=1)) == []
    with store._read() as tx:
        assert tx.execute("SELECT count(*) FROM story_keys").fetchone()[0] == 0
        assert tx.execute("SELECT count(*) FROM stories").fetchone()[0] == 0


def add_old_match(connection) -> None:
    """An item matched and alerted before stories existed, in the schema of that time."""
    for statement in (
        "INSERT INTO feeds (name, url) VALUES ('tass', 'https://tass.example/rss')",
        "INSERT INTO items (feed, key, title, link, first_seen, last_seen) VALUES"
        " ('tass', 'a', 'Kremlin rejects energy truce plan, Peskov says', 'https://t.example/1',"
        " '2026-11-25T11:00:00.000000Z', '2026-11-25T11:00:00.000000Z')",
        "INSERT INTO matches (item_id, rule, terms, hits, detected_at) VALUES"
        " (1, 'peskov', '[\"Peskov\"]', '[]', '2026-11-25T11:00:00.000000Z')",
        "INSERT INTO deliveries (uid, match_id, notifier, status, attempts, next_attempt,"
        " created_at) VALUES ('d-1', 1, 'hook', 'pending', 0, '2026-11-25T11:00:00.000000Z',"
        " '2026-11-25T11:00:00.000000Z')",
    ):
        connection.execute(statement)


def before_stories(migrations: list[Any]) -> list[Any]:
    """The migrations a database made before stories existed had."""
    names = [name for name, _ in migrations]
    return migrations[: names.index("group_matches_into_stories")]


def check_old_match_is_a_story(store: Store) -> None:
    (story,) = store.stories(NOW - timedelta(days=1))
    assert [r.item.entry.key for r in story.reports] == ["a"]
    assert story.first_seen == NOW - timedelta(hours=1)
    (delivery,) = store.due_deliveries(NOW, ["hook"])
    assert delivery.alert.story is not None and delivery.alert.story.id == story.id
    # new matches get stories of their own after the migrated ones
    assert ingest(store, "reuters", [report("b", *CALL)]) == 1
    assert len(store.stories(NOW - timedelta(days=1))) == 2


def test_an_sqlite_database_with_matches_from_before_stories_is_migrated(tmp_path):
    from watcher.state import sqlite as backend

    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "MIGRATIONS", before_stories(backend.MIGRATIONS))
        backend.migrate(connection)
    add_old_match(connection)
    connection.close()
    store = open_store(path)
    check_old_match_is_a_story(store)
    store.close()


def test_a_postgresql_database_with_matches_from_before_stories_is_migrated(postgres_url):
    import psycopg

    from watcher.state import postgres as backend

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "MIGRATIONS", before_stories(backend.MIGRATIONS))
        open_store(postgres_url).close()
    with psycopg.connect(postgres_url) as connection:
        add_old_match(connection)
    store = open_store(postgres_url)
    check_old_match_is_a_story(store)
    store.close()
