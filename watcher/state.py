"""SQLite state: schema, migrations and every query. The only module that writes SQL.

Polls run in worker threads and a sqlite3 connection must stay in its thread, so each thread
gets its own connection. Writes open with ``BEGIN IMMEDIATE``: a deferred transaction that
reads then writes fails at once with "database is locked" when another writer got there
first, while an immediate one waits (``busy_timeout``) for its turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlite_utils import Database, Migrations

from watcher.errors import QueryError, StateError
from watcher.links import canonical_link
from watcher.models import Alert, Entry
from watcher.rules import Match

BUSY_TIMEOUT = 30.0
_CHUNK = 500

migrations = Migrations("watcher")


@migrations()
def create_core_tables(db: Database) -> None:
    db.table("feeds").create(
        {
            "name": str,
            "url": str,
            "etag": str,
            "last_modified": str,
            "baseline_done": int,
            "last_poll": str,
            "last_success": str,
            "last_error": str,
            "failures": int,
            "created_at": str,
        },
        pk="name",
        not_null={"url", "baseline_done", "failures"},
        defaults={"baseline_done": 0, "failures": 0},
    )
    db.table("items").create(
        {
            "id": int,
            "feed": str,
            "key": str,
            "title": str,
            "link": str,
            "summary": str,
            "content": str,
            "author": str,
            "tags": str,
            "published": str,
            "first_seen": str,
            "last_seen": str,
        },
        pk="id",
        not_null={"feed", "key"},
    )
    db.table("items").create_index(["feed", "key"], unique=True)
    db.table("items").enable_fts(["title", "summary", "content"], create_triggers=True)
    db.table("matches").create(
        {"id": int, "item_id": int, "rule": str, "terms": str, "detected_at": str},
        pk="id",
        foreign_keys=[("item_id", "items", "id")],
        not_null={"item_id", "rule"},
    )
    db.table("matches").create_index(["item_id", "rule"], unique=True)
    db.table("deliveries").create(
        {
            "id": int,
            "uid": str,
            "match_id": int,
            "notifier": str,
            "status": str,
            "attempts": int,
            "next_attempt": str,
            "last_error": str,
            "created_at": str,
            "sent_at": str,
        },
        pk="id",
        foreign_keys=[("match_id", "matches", "id")],
        not_null={"uid", "match_id", "notifier", "status", "attempts"},
        defaults={"status": "pending", "attempts": 0},
    )
    db.table("deliveries").create_index(["uid"], unique=True)
    db.table("deliveries").create_index(["status", "next_attempt"])
    db.table("deliveries").create_index(["notifier", "status", "id"])


@migrations()
def add_match_hits(db: Database) -> None:
    """Where each term matched (field and words), for highlighting and ``watcher matches``."""
    db.table("matches").add_column("hits", str)


@migrations()
def add_leases_and_canonical_links(db: Database) -> None:
    """A delivery being sent is leased, so no two passes send it at once and a pass that
    died mid-send gives it back when the lease ends. Items keep their canonical link, so a
    story reaching a rule through two feeds is alerted once; the match records the others."""
    db.table("deliveries").add_column("lease_until", str)
    db.table("items").add_column("canonical", str)
    db.table("items").create_index(["canonical"])
    db.table("matches").add_column("also_in", str)


@migrations()
def add_feed_health(db: Database) -> None:
    """When a failing feed may be polled again, whether it is gone (410), where it moved, and
    a hash of its last body (servers that ignore conditional GET resend the same bytes)."""
    feeds = db.table("feeds")
    feeds.add_column("next_poll", str)
    feeds.add_column("gone", int, not_null_default=0)
    feeds.add_column("moved_to", str)
    feeds.add_column("body_hash", str)


def timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with a fixed width, so that text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class FeedState:
    name: str
    etag: str | None = None
    last_modified: str | None = None
    baseline_done: bool = False
    failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    next_poll: datetime | None = None
    """Set while a failing feed backs off."""
    gone: bool = False
    moved_to: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True)
class NewItem:
    """An entry not seen before in its feed, with the matches to alert (none for a baseline)."""

    entry: Entry
    matches: tuple[Match, ...] = ()


@dataclass(frozen=True)
class StoredItem:
    feed: str
    entry: Entry
    first_seen: datetime


@dataclass(frozen=True)
class StoredMatch:
    rule: str
    terms: tuple[str, ...]
    detected_at: datetime
    item: StoredItem
    deliveries: tuple[str, ...]
    """``notifier:status`` of each delivery of the match."""


_ITEM_COLUMNS = "feed, key, title, link, summary, content, author, tags, published, first_seen"
_ITEM_COLUMNS_I = ", ".join(f"i.{column}" for column in _ITEM_COLUMNS.split(", "))


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as ``watcher deliveries`` lists it."""

    id: int
    delivery_id: str
    notifier: str
    status: str
    attempts: int
    next_attempt: datetime | None
    sent_at: datetime | None
    last_error: str | None
    created_at: datetime
    rule: str
    feed: str
    title: str


@dataclass(frozen=True)
class Delivery:
    id: int
    notifier: str
    attempts: int
    created_at: datetime
    alert: Alert


def _roll_back(connection: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction. SQLite has already rolled back after
    some errors (a corrupt page, a full disk): the error that caused it is the one to tell."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _database_errors(cls: type[Store]) -> type[Store]:
    """Every public method of the store raises StateError, never a sqlite3 error."""
    for name, method in list(vars(cls).items()):
        if callable(method) and not name.startswith("_") and name not in ("close", "writable"):
            setattr(cls, name, _translated(method))
    return cls


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: Store, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _state_error(self.path, exc) from exc

        return generator

    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from exc

    return call


def _state_error(path: Path, exc: sqlite3.Error) -> StateError:
    cause = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in cause or "not a database" in cause or "vtable constructor" in cause
    ):
        cause += " (the file is damaged: restore it from a backup, or move it away to start afresh)"
    return StateError(f"database {path}: {cause}")


@_database_errors
class Store:
    """The state database. Safe to share between threads: each thread has its own connection
    (opened with check_same_thread off only so that ``close``, or the next thread to open
    one, can close it once its thread has ended)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            db.enable_wal()
            migrations.apply(db)
        except OSError as exc:
            raise StateError(f"cannot open the database {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from exc

    def _db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")
            db = Database(connection, execute_plugins=False)
            self._local.db = db
            with self._lock:
                self._close_finished()
                self._connections[threading.current_thread()] = connection
        return db

    def _close_finished(self) -> None:
        """Close the connections of threads that ended (a health request's, a delivery
        pass's), so that open connections never outnumber the live threads."""
        for thread in [thread for thread in self._connections if not thread.is_alive()]:
            self._connections.pop(thread).close()

    def close(self) -> None:
        """Close every thread's connection; call once the worker threads are done."""
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def _write(self) -> Iterator[Database]:
        db = self._db()
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            _roll_back(db.conn)
            raise
        db.conn.execute("COMMIT")

    def writable(self) -> str | None:
        """What keeps the database from being written, or None when it can be."""
        try:
            db = self._db()
            db.conn.execute("BEGIN IMMEDIATE")
            db.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            return f"database {self.path} not writable: {exc}"
        return None

    # feeds

    def feed_state(self, name: str, url: str | None = None) -> FeedState:
        """What is known of a feed; when the config now gives it another ``url``, only its
        baseline is kept (validators, health and backoff were the old URL's)."""
        rows = list(self._db().query("SELECT * FROM feeds WHERE name = ?", [name]))
        if not rows:
            return FeedState(name)
        row = rows[0]
        if url is not None and row["url"] != url:
            return FeedState(name, baseline_done=bool(row["baseline_done"]))
        return FeedState(
            name=name,
            etag=row["etag"],
            last_modified=row["last_modified"],
            baseline_done=bool(row["baseline_done"]),
            failures=row["failures"],
            last_success=from_timestamp(row["last_success"]),
            last_error=row["last_error"],
            next_poll=from_timestamp(row["next_poll"]),
            gone=bool(row["gone"]),
            moved_to=row["moved_to"],
            body_hash=row["body_hash"],
        )

    def feed_states(self) -> dict[str, FeedState]:
        names = [row[0] for row in self._db().execute("SELECT name FROM feeds")]
        return {name: self.feed_state(name) for name in names}

    def item_counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT feed, count(*) FROM items GROUP BY feed")
        return {feed: count for feed, count in rows}

    def record_failure(
        self,
        name: str,
        url: str,
        error: str,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        gone: bool = False,
    ) -> int:
        """Note a failed poll, the time before which the feed is not polled again, and
        whether it is gone for good; return the number of consecutive failures."""
        with self._write() as db:
            self._ensure_feed(db, name, url, now)
            db.execute(
                "UPDATE feeds SET last_poll = ?, last_error = ?, failures = failures + 1,"
                " next_poll = ?, gone = ? WHERE name = ?",
                [timestamp(now), error, retry_at and timestamp(retry_at), int(gone), name],
            )
            row = db.execute("SELECT failures FROM feeds WHERE name = ?", [name]).fetchone()
        return int(row[0])

    def record_unchanged(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        moved_to: str | None = None,
    ) -> None:
        """A successful poll that brought nothing new (a 304, or the same body again): the
        items of the last full poll are still in the feed, so they are seen again now."""
        with self._write() as db:
            self._ensure_feed(db, name, url, now)
            db.execute(
                "UPDATE items SET last_seen = ? WHERE feed = ? AND last_seen ="
                " (SELECT max(last_seen) FROM items WHERE feed = ?)",
                [timestamp(now), name, name],
            )
            self._mark_success(db, name, now, etag, last_modified, moved_to)

    def _ensure_feed(self, db: Database, name: str, url: str, now: datetime) -> None:
        """The feed's row; a new URL drops what was known of the old one but the baseline."""
        row = db.execute("SELECT url FROM feeds WHERE name = ?", [name]).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO feeds (name, url, created_at) VALUES (?, ?, ?)",
                [name, url, timestamp(now)],
            )
        elif row[0] != url:
            db.execute(
                "UPDATE feeds SET url = ?, etag = NULL, last_modified = NULL, body_hash = NULL,"
                " gone = 0, moved_to = NULL, next_poll = NULL, failures = 0 WHERE name = ?",
                [url, name],
            )

    def _mark_success(
        self,
        db: Database,
        name: str,
        now: datetime,
        etag: str | None,
        last_modified: str | None,
        moved_to: str | None,
        body_hash: str | None = None,
    ) -> None:
        db.execute(
            "UPDATE feeds SET last_poll = ?, last_success = ?, last_error = NULL, failures = 0,"
            " next_poll = NULL, gone = 0, etag = ?, last_modified = ?, moved_to = ?,"
            " body_hash = coalesce(?, body_hash) WHERE name = ?",
            [timestamp(now), timestamp(now), etag, last_modified, moved_to, body_hash, name],
        )

    # items

    def unseen(self, feed: str, keys: Sequence[str]) -> set[str]:
        """The keys not yet stored for this feed."""
        known: set[str] = set()
        db = self._db()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT key FROM items WHERE feed = ? AND key IN ({marks})", [feed, *chunk]
            )
            known.update(row[0] for row in rows)
        return set(keys) - known

    def ingest(
        self,
        feed: str,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        present: Sequence[str],
        new_items: Iterable[NewItem],
        now: datetime,
        moved_to: str | None = None,
        body_hash: str | None = None,
    ) -> int:
        """Record a successful poll in one transaction: new items, their matches and the
        matches' deliveries, the keys still present and the feed's validators.

        Return the number of deliveries created.
        """
        stamp = timestamp(now)
        created = 0
        items = list(new_items)
        with self._write() as db:
            self._ensure_feed(db, feed, url, now)
            db.conn.executemany(  # most items match nothing: stored in one statement
                _INSERT_ITEM,
                [_item_row(feed, i.entry, stamp) for i in items if not i.matches],
            )
            for item in items:
                if not item.matches:
                    continue
                canonical = canonical_link(item.entry.link)
                item_id = self._insert_item(db, feed, item.entry, canonical, stamp)
                if item_id is None:
                    continue
                for match in item.matches:
                    if canonical and self._seen_elsewhere(db, match.rule, canonical, feed):
                        continue
                    created += self._insert_match(db, item_id, match, stamp)
            for start in range(0, len(present), _CHUNK):
                chunk = present[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE items SET last_seen = ? WHERE feed = ? AND key IN ({marks})",
                    [stamp, feed, *chunk],
                )
            db.execute("UPDATE feeds SET baseline_done = 1 WHERE name = ?", [feed])
            self._mark_success(db, feed, now, etag, last_modified, moved_to, body_hash)
        return created

    def _seen_elsewhere(self, db: Database, rule: str, canonical: str, feed: str) -> bool:
        """Whether the rule already matched this story, linked from another item; if so the
        feed is added to that match's ``also_in`` and no second alert is made."""
        row = db.execute(
            "SELECT m.id, m.also_in, i.feed FROM matches m JOIN items i ON i.id = m.item_id"
            " WHERE i.canonical = ? AND m.rule = ? ORDER BY m.id LIMIT 1",
            [canonical, rule],
        ).fetchone()
        if row is None:
            return False
        match_id, also_in, first_feed = row
        feeds = json.loads(also_in or "[]")
        if feed != first_feed and feed not in feeds:
            feeds.append(feed)
            db.execute(
                "UPDATE matches SET also_in = ? WHERE id = ?",
                [json.dumps(feeds, ensure_ascii=False), match_id],
            )
        return True

    def _insert_item(
        self, db: Database, feed: str, entry: Entry, canonical: str, stamp: str
    ) -> int | None:
        row = db.execute(
            _INSERT_ITEM + " RETURNING id", _item_row(feed, entry, stamp, canonical)
        ).fetchone()
        return None if row is None else int(row[0])

    def _insert_match(self, db: Database, item_id: int, match: Match, stamp: str) -> int:
        row = db.execute(
            "INSERT INTO matches (item_id, rule, terms, hits, detected_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (item_id, rule) DO NOTHING RETURNING id",
            [
                item_id,
                match.rule,
                json.dumps(list(match.terms), ensure_ascii=False),
                json.dumps([list(hit) for hit in match.hits], ensure_ascii=False),
                stamp,
            ],
        ).fetchone()
        if row is None:
            return 0
        for notifier in match.notify:
            db.execute(
                "INSERT INTO deliveries (uid, match_id, notifier, status, attempts,"
                " next_attempt, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                [str(uuid.uuid4()), row[0], notifier, stamp, stamp],
            )
        return len(match.notify)

    def item_count(self, feed: str | None = None) -> int:
        sql = "SELECT count(*) FROM items" + (" WHERE feed = ?" if feed else "")
        return int(self._db().execute(sql, [feed] if feed else []).fetchone()[0])

    def items_since(self, since: datetime, feed: str | None = None) -> Iterator[StoredItem]:
        """Items first seen since a time, newest first, optionally of one feed."""
        sql = f"SELECT {_ITEM_COLUMNS} FROM items WHERE first_seen >= ?"
        params: list[str] = [timestamp(since)]
        if feed:
            sql += " AND feed = ?"
            params.append(feed)
        for row in self._db().query(sql + " ORDER BY first_seen DESC, id DESC", params):
            yield _stored_item(row)

    def search(self, query: str, limit: int = 20) -> list[StoredItem]:
        """Full-text search (SQLite FTS5 syntax) over titles, summaries and contents."""
        try:
            rows = (
                self._db()
                .table("items")
                .search(query, columns=_ITEM_COLUMNS.split(", "), limit=limit)
            )
            return [_stored_item(row) for row in rows]
        except sqlite3.OperationalError as exc:
            raise QueryError(f"bad search query: {exc}", 1) from exc

    def recent_matches(
        self, since: datetime, rule: str | None = None, limit: int = 100
    ) -> list[StoredMatch]:
        """Matches detected since a time, newest first, with their deliveries' states."""
        sql = (
            f"SELECT m.id AS match_id, m.rule, m.terms, m.detected_at, {_ITEM_COLUMNS_I},"
            " (SELECT group_concat(d.notifier || ':' || d.status, ' ') FROM deliveries d"
            "  WHERE d.match_id = m.id) AS deliveries"
            " FROM matches m JOIN items i ON i.id = m.item_id WHERE m.detected_at >= ?"
        )
        params: list[str | int] = [timestamp(since)]
        if rule:
            sql += " AND m.rule = ?"
            params.append(rule)
        sql += " ORDER BY m.id DESC LIMIT ?"
        params.append(limit)
        return [
            StoredMatch(
                rule=row["rule"],
                terms=tuple(json.loads(row["terms"] or "[]")),
                detected_at=from_timestamp(row["detected_at"]) or datetime.now(UTC),
                item=_stored_item(row),
                deliveries=tuple((row["deliveries"] or "").split()),
            )
            for row in self._db().query(sql, params)
        ]

    # deliveries

    def due_deliveries(
        self, now: datetime, notifiers: Iterable[str], limit: int = 200
    ) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest detection first."""
        names = list(notifiers)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self._db().query(
            "SELECT d.id, d.uid, d.notifier, d.attempts, d.created_at, m.rule, m.terms, m.hits,"
            " m.detected_at, i.key, i.title, i.link, i.summary, i.content, i.author, i.tags,"
            " i.published, f.name AS feed_name, f.url AS feed_url"
            " FROM deliveries d JOIN matches m ON m.id = d.match_id"
            " JOIN items i ON i.id = m.item_id JOIN feeds f ON f.name = i.feed"
            f" WHERE d.status = 'pending' AND d.next_attempt <= ? AND d.notifier IN ({marks})"
            " AND (d.lease_until IS NULL OR d.lease_until <= ?)"
            " ORDER BY d.id LIMIT ?",
            [timestamp(now), *names, timestamp(now), limit],
        )
        return [_delivery(row) for row in rows]

    def release_leases(self) -> int:
        """Give back every lease: called by the one process allowed to deliver (it holds the
        database lock) when it starts, so that what a killed predecessor was sending is sent
        again at once, under the same delivery id."""
        with self._write() as db:
            return db.execute(
                "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL"
            ).rowcount

    def notifiers_due(self, now: datetime, notifiers: Iterable[str]) -> list[str]:
        """The notifiers that have a delivery due."""
        names = list(notifiers)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self._db().execute(
            "SELECT DISTINCT notifier FROM deliveries WHERE status = 'pending'"
            f" AND next_attempt <= ? AND notifier IN ({marks})"
            " AND (lease_until IS NULL OR lease_until <= ?)",
            [timestamp(now), *names, timestamp(now)],
        )
        return sorted(row[0] for row in rows)

    def claim(self, delivery_ids: int | Sequence[int], now: datetime, lease: timedelta) -> bool:
        """Lease pending deliveries for sending, all or none; False when another pass holds
        one or one is no longer pending. A lease that ran out (its holder died) is taken
        back."""
        ids = _ids(delivery_ids)
        free = f"id IN ({_marks(ids)}) AND status = 'pending'"
        free += " AND (lease_until IS NULL OR lease_until <= ?)"
        with self._write() as db:
            row = db.execute(
                f"SELECT count(*) FROM deliveries WHERE {free}", [*ids, timestamp(now)]
            )
            if row.fetchone()[0] != len(ids):
                return False
            db.execute(
                f"UPDATE deliveries SET lease_until = ? WHERE {free}",
                [timestamp(now + lease), *ids, timestamp(now)],
            )
        return True

    def mark_sent(
        self, delivery_ids: int | Sequence[int], now: datetime, note: str | None = None
    ) -> None:
        """Record acknowledged deliveries (a digest's together); ``note`` keeps a warning
        (recipients refused)."""
        ids = _ids(delivery_ids)
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                f" last_error = ?, lease_until = NULL WHERE id IN ({_marks(ids)})",
                [timestamp(now), note, *ids],
            )

    def mark_failed(
        self,
        delivery_ids: int | Sequence[int],
        error: str,
        *,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        """Record a failed attempt: pending until ``retry_at``, or dead when it is None."""
        ids = _ids(delivery_ids)
        status = "pending" if retry_at is not None else "dead"
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
                f" next_attempt = ?, lease_until = NULL WHERE id IN ({_marks(ids)})",
                [status, error, timestamp(retry_at or now), *ids],
            )

    def deliveries(self, *, failed: bool = False, limit: int = 100) -> list[DeliveryRow]:
        """The outbox, newest first; ``failed``: only dead deliveries and pending ones that
        have failed at least once."""
        where = "WHERE d.status = 'dead' OR (d.status = 'pending' AND d.attempts > 0)"
        rows = self._db().query(
            "SELECT d.id, d.uid, d.notifier, d.status, d.attempts, d.next_attempt, d.sent_at,"
            " d.last_error, d.created_at, m.rule, i.feed, i.title"
            " FROM deliveries d JOIN matches m ON m.id = d.match_id"
            f" JOIN items i ON i.id = m.item_id {where if failed else ''}"
            " ORDER BY d.id DESC LIMIT ?",
            [limit],
        )
        return [
            DeliveryRow(
                id=row["id"],
                delivery_id=row["uid"],
                notifier=row["notifier"],
                status=row["status"],
                attempts=row["attempts"],
                next_attempt=from_timestamp(row["next_attempt"]),
                sent_at=from_timestamp(row["sent_at"]),
                last_error=row["last_error"],
                created_at=from_timestamp(row["created_at"]) or datetime.now(UTC),
                rule=row["rule"],
                feed=row["feed"],
                title=row["title"] or "",
            )
            for row in rows
        ]

    def prune(self, before: datetime) -> int:
        """Delete the items last seen in their feed before a time, with their matches and
        finished deliveries; an item still in its feed (seen at its feed's last poll) or with
        a delivery still pending is kept. Return how many items went."""
        with self._write() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT i.id FROM items i WHERE i.last_seen < ? AND NOT EXISTS ("
                    " SELECT 1 FROM matches m JOIN deliveries d ON d.match_id = m.id"
                    " WHERE m.item_id = i.id AND d.status = 'pending')",
                    [timestamp(before)],
                )
            ]
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = _marks(chunk)
                db.execute(
                    "DELETE FROM deliveries WHERE match_id IN"
                    f" (SELECT id FROM matches WHERE item_id IN ({marks}))",
                    chunk,
                )
                db.execute(f"DELETE FROM matches WHERE item_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
        return len(ids)

    def requeue(self, ids: Sequence[int], now: datetime) -> int:
        """Put dead deliveries (those of ``ids``, or all when empty) back in the queue, due
        now and with a fresh ``give_up`` period; return how many."""
        sql = (
            "UPDATE deliveries SET status = 'pending', next_attempt = ?, created_at = ?,"
            " lease_until = NULL WHERE status = 'dead'"
        )
        params: list[str | int] = [timestamp(now), timestamp(now)]
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        with self._write() as db:
            return db.execute(sql, params).rowcount

    def delivery_counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return {status: count for status, count in rows}


_INSERT_ITEM = (
    "INSERT INTO items (feed, key, title, link, canonical, summary, content, author, tags,"
    " published, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (feed, key) DO NOTHING"
)


def _item_row(feed: str, entry: Entry, stamp: str, canonical: str | None = None) -> list[Any]:
    published = timestamp(entry.published) if entry.published else None
    if canonical is None:
        canonical = canonical_link(entry.link)
    return [
        feed,
        entry.key,
        entry.title,
        entry.link,
        canonical or None,
        entry.summary,
        entry.content,
        entry.author,
        json.dumps(list(entry.tags), ensure_ascii=False),
        published,
        stamp,
        stamp,
    ]


def _ids(delivery_ids: int | Sequence[int]) -> list[int]:
    return [delivery_ids] if isinstance(delivery_ids, int) else list(delivery_ids)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _entry(row: dict) -> Entry:
    return Entry(
        key=row["key"],
        title=row["title"] or "",
        link=row["link"] or "",
        summary=row["summary"] or "",
        content=row["content"] or "",
        author=row["author"] or "",
        tags=tuple(json.loads(row["tags"] or "[]")),
        published=from_timestamp(row["published"]),
    )


def _stored_item(row: dict) -> StoredItem:
    seen = from_timestamp(row["first_seen"]) or datetime.now(UTC)
    return StoredItem(row["feed"], _entry(row), seen)


def _delivery(row: dict) -> Delivery:
    entry = _entry(row)
    alert = Alert(
        delivery_id=row["uid"],
        rule=row["rule"],
        terms=tuple(json.loads(row["terms"] or "[]")),
        words=tuple(sorted({w for _, _, found in json.loads(row["hits"] or "[]") for w in found})),
        feed_name=row["feed_name"],
        feed_url=row["feed_url"],
        item=entry,
        detected_at=from_timestamp(row["detected_at"]) or datetime.now(UTC),
    )
    created = from_timestamp(row["created_at"]) or alert.detected_at
    return Delivery(row["id"], row["notifier"], row["attempts"], created, alert)


class DatabaseLock:
    """An exclusive lock beside the database, held by the one process that polls it.

    flock is released by the kernel when the process dies, so a crash leaves no stale lock.
    """

    def __init__(self, database: str | Path) -> None:
        self.path = Path(f"{database}.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StateError(
                f"another watcher (pid {holder}) is already polling {self.path.with_suffix('')}; "
                "stop it first, or use another database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def holder(self) -> str | None:
        """The pid of the process holding the lock, or None when nobody does."""
        if not self.path.exists():
            return None
        with self.path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return handle.read().strip() or "unknown"
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
