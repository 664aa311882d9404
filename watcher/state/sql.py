"""The queries both backends share, written once in the SQL that SQLite and PostgreSQL both
speak (``?`` placeholders, ``RETURNING``, ``ON CONFLICT``); a backend supplies connections,
transactions, its full-text index and the few words where the two differ.

The full-text index of each backend indexes one column, ``items.words``: the distinct words
the rules' matcher sees in the item, written by Python at insert (``item_words``). So both
backends find the same candidates for a search, exactly the matcher's words (HTML stripped,
entities decoded, case and accents folded), where each database's own tokenizer would differ
from the matcher and from the other (PostgreSQL keeps accents, SQLite keeps an ``ß``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from abc import abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from watcher import stories
from watcher.errors import StateError
from watcher.links import canonical_link
from watcher.models import Alert, Entry, Story, StoryReport
from watcher.rules import Document, Match
from watcher.state import grouping
from watcher.state.base import (
    Delivery,
    DeliveryRow,
    FeedRow,
    FeedState,
    NewItem,
    PendingArticle,
    Process,
    ScheduledFeed,
    SearchWord,
    Store,
    StoredItem,
    StoredMatch,
    StoredStory,
    Unchanged,
    from_timestamp,
    timestamp,
)

log = logging.getLogger(__name__)

CHUNK = 500
"""Values bound in one ``IN (...)``: well under either database's limit."""
ITEM_COLUMNS = "feed, key, title, link, summary, content, author, tags, published, first_seen"
ITEM_COLUMNS_I = ", ".join(f"i.{column}" for column in ITEM_COLUMNS.split(", "))
INSERT_ITEM = (
    "INSERT INTO items (feed, key, title, link, canonical, summary, content, author, tags,"
    " published, first_seen, last_seen, words, article)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feed, key) DO NOTHING"
)
FEED_STATUS = (
    "CASE WHEN f.last_success IS NULL AND f.failures = 0 THEN 'new'"
    " WHEN f.gone <> 0 THEN 'gone' WHEN f.failures > 0 THEN 'failing'"
    " WHEN coalesce(f.moved_to, '') <> '' THEN 'moved' ELSE 'ok' END"
)
"""``FeedState.status`` in SQL, of a feed row ``f``: the pages count and filter feeds by it
without reading every feed."""
FEED_ROW = (
    "SELECT f.*, (SELECT count(*) FROM items i WHERE i.feed = f.name) AS item_count FROM feeds f"
)
PENDING = "pending"
"""``items.article`` of an item waiting for its article; then ``fetched`` (its content is
the article's text) or ``failed`` (matched on what the feed gave); NULL for other items."""
MAX_WORD = 200
"""Characters of a word the search index keeps: a longer word is indexed by its start (a
PostgreSQL lexeme holds at most 2,047 bytes)."""
MAX_WORDS = 1_000_000
"""Bytes of words the index keeps of one item (a PostgreSQL tsvector holds less than 1 MB of
lexemes). An item with more, which only a hostile feed makes, is not indexed: its ``words``
are NULL, and it is a candidate of every search."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """A connection inside a transaction (or for reading), in ``?`` placeholder SQL."""

    each: str
    """A table of the values of one list parameter (``listed``), a row each, in a column
    ``value``: a statement over any number of values keeps one text, so PostgreSQL plans it
    once for the connection instead of at each call (a third of the cost of a statement of
    30 values)."""

    def listed(self, values: Sequence[str]) -> Any:
        """The parameter ``each`` reads: ``values`` as the backend passes a list."""
        ...

    def together(self) -> AbstractContextManager[Any]:
        """A block whose statements are sent together: those whose results are not read
        (writes) cost one round trip to a PostgreSQL server between them, not one each.
        Their errors are raised when the block ends."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class SQLStore(Store):
    """Everything but connections, search and the dialect's few differences."""

    concat_statuses = "group_concat(d.notifier || ':' || d.status, ' ')"
    lock_rows = ""
    """What a backend adds to a SELECT of rows to claim, so that claims skip each other."""

    def _lock_stories(self, tx: Tx, keys: Sequence[str]) -> None:
        """Hold, until the transaction ends, a lock on each rule (``story <rule>``) whose
        stories are about to be looked up and written, so that two ingests of one story
        (one link, or two outlets' reports) cannot both alert. SQLite needs none: its writes
        are one at a time."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A connection to read with."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def _probe(self) -> str | None:
        """What keeps the database from taking a write now, found without waiting long."""

    write_problem: str | None = None
    """Why the last write failed, until one succeeds: the health check reports it."""

    @contextlib.contextmanager
    def _write(self) -> Iterator[Tx]:
        try:
            with self._transaction() as tx:
                yield tx
        except StateError as exc:
            self.write_problem = str(exc)
            raise
        self.write_problem = None

    def writable(self) -> str | None:
        return self.write_problem or self._probe()

    # schedule

    def sync_feeds(
        self, feeds: Sequence[ScheduledFeed], now: datetime, *, retire: bool = True
    ) -> None:
        stamp = timestamp(now)
        with self._write() as tx:
            if retire:
                tx.execute("UPDATE feeds SET active = 0 WHERE active = 1")
            # a feed whose URL changed starts afresh (validators, health, gone, backoff)
            tx.executemany(
                "UPDATE feeds SET url = ?, etag = NULL, last_modified = NULL, body_hash = NULL,"
                " gone = 0, moved_to = NULL, failures = 0, next_poll = ? WHERE name = ?"
                " AND url <> ?",
                [(f.url, timestamp(f.first_poll), f.name, f.url) for f in feeds],
            )
            tx.executemany(
                "INSERT INTO feeds (name, url, created_at, next_poll, active)"
                " VALUES (?, ?, ?, ?, 1) ON CONFLICT (name) DO UPDATE SET active = 1,"
                " next_poll = CASE WHEN feeds.next_poll IS NULL THEN ?"
                " WHEN feeds.next_poll > ? AND feeds.failures = 0 THEN ?"
                " ELSE feeds.next_poll END",
                [
                    (feed.name, feed.url, stamp, first, first, latest, latest)
                    for feed in feeds
                    for first, latest in [
                        (timestamp(feed.first_poll), timestamp(now + feed.interval))
                    ]
                ],
            )

    def claim_feeds(self, owner: str, now: datetime, limit: int, lease: timedelta) -> list[str]:
        if limit <= 0:
            return []
        stamp = timestamp(now)
        with self._write() as tx:
            rows = tx.execute(
                "UPDATE feeds SET lease_owner = ?, lease_until = ? WHERE name IN ("
                " SELECT name FROM feeds WHERE active = 1 AND gone = 0"
                " AND (next_poll IS NULL OR next_poll <= ?)"
                " AND (lease_until IS NULL OR lease_until <= ?)"
                f" ORDER BY next_poll LIMIT ?{self.lock_rows}) RETURNING name, next_poll",
                [owner, timestamp(now + lease), stamp, stamp, limit],
            ).fetchall()
        return [name for name, _ in sorted(rows, key=lambda row: (row[1] or "", row[0]))]

    def next_due(self) -> datetime | None:
        with self._read() as tx:
            row = tx.execute(
                "SELECT min(CASE WHEN lease_until > next_poll THEN lease_until"
                " ELSE next_poll END) FROM feeds WHERE active = 1 AND gone = 0"
            ).fetchone()
        return from_timestamp(row[0]) if row else None

    def renew_feed(self, owner: str, name: str, until: datetime) -> bool:
        with self._write() as tx:
            row = tx.execute(
                "UPDATE feeds SET lease_until = ? WHERE name = ? AND lease_owner = ?"
                " RETURNING name",
                [timestamp(until), name, owner],
            ).fetchone()
        return row is not None

    def release_feeds(
        self, owner: str, names: Sequence[str] = (), *, until: datetime | None = None
    ) -> None:
        sql = "UPDATE feeds SET lease_owner = NULL, lease_until = NULL"
        params: list[Any] = []
        if until is not None:
            sql += ", next_poll = ?"
            params.append(timestamp(until))
        sql += " WHERE lease_owner = ?"
        params.append(owner)
        with self._write() as tx:
            if not names:
                tx.execute(sql, params)
            for chunk in _chunks(names):
                tx.execute(sql + f" AND name IN ({_marks(chunk)})", [*params, *chunk])

    def claim_notifiers(
        self, owner: str, names: Sequence[str], now: datetime, lease: timedelta
    ) -> list[str]:
        if not names:
            return []
        stamp, until = timestamp(now), timestamp(now + lease)
        with self._write() as tx:
            tx.executemany(
                "INSERT INTO notifier_leases (notifier, owner, lease_until) VALUES (?, ?, ?)"
                " ON CONFLICT (notifier) DO NOTHING",
                [(name, None, None) for name in names],
            )
            rows = tx.execute(
                "UPDATE notifier_leases SET owner = ?, lease_until = ? WHERE notifier IN ("
                f" SELECT notifier FROM notifier_leases WHERE notifier IN ({_marks(names)})"
                " AND (owner = ? OR owner IS NULL OR lease_until <= ?)"
                f"{self.lock_rows}) RETURNING notifier",
                [owner, until, *names, owner, stamp],
            ).fetchall()
        return sorted(row[0] for row in rows)

    def release_notifiers(self, owner: str) -> None:
        with self._write() as tx:
            tx.execute(
                "UPDATE notifier_leases SET owner = NULL, lease_until = NULL WHERE owner = ?",
                [owner],
            )

    def heartbeat(self, process: Process) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO processes (id, host, pid, started_at, last_seen)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET last_seen = ?",
                [
                    process.id,
                    process.host,
                    process.pid,
                    timestamp(process.started_at),
                    timestamp(process.last_seen),
                    timestamp(process.last_seen),
                ],
            )

    def processes(self, since: datetime) -> list[Process]:
        with self._read() as tx:
            rows = tx.rows(
                "SELECT p.id, p.host, p.pid, p.started_at, p.last_seen,"
                " (SELECT count(*) FROM feeds f WHERE f.lease_owner = p.id"
                "  AND f.lease_until > ?) AS feeds,"
                " (SELECT count(*) FROM notifier_leases n WHERE n.owner = p.id"
                "  AND n.lease_until > ?) AS notifiers"
                " FROM processes p WHERE p.last_seen >= ? ORDER BY p.host, p.pid",
                [timestamp(since)] * 3,
            )
        return [
            Process(
                id=row["id"],
                host=row["host"],
                pid=int(row["pid"]),
                started_at=from_timestamp(row["started_at"]) or since,
                last_seen=from_timestamp(row["last_seen"]) or since,
                feeds=int(row["feeds"]),
                notifiers=int(row["notifiers"]),
            )
            for row in rows
        ]

    def forget_process(self, process_id: str) -> None:
        with self._write() as tx:
            tx.execute("DELETE FROM processes WHERE id = ?", [process_id])
            tx.execute(
                "UPDATE feeds SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                [process_id],
            )
            tx.execute(
                "UPDATE notifier_leases SET owner = NULL, lease_until = NULL WHERE owner = ?",
                [process_id],
            )

    # feeds

    def feed_state(self, name: str, url: str | None = None) -> FeedState:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM feeds WHERE name = ?", [name])
        if not rows:
            return FeedState(name)
        row = rows[0]
        if url is not None and row["url"] != url:
            return FeedState(name, baseline_done=bool(row["baseline_done"]))
        return _feed_state(row)

    def feed_states(self) -> dict[str, FeedState]:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM feeds")
        return {row["name"]: _feed_state(row) for row in rows}

    def feed_health(self) -> dict[str, int]:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {FEED_STATUS} AS status, count(*) FROM feeds f WHERE f.active = 1"
                " GROUP BY 1"
            ).fetchall()
        return {status: int(count) for status, count in rows}

    def feed_rows(
        self, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[FeedRow]:
        sql, params = f"{FEED_ROW} WHERE f.active = 1", []
        if status is not None:
            sql += f" AND {FEED_STATUS} = ?"
            params.append(status)
        if after is not None:
            sql += " AND f.name > ?"
            params.append(after)
        with self._read() as tx:
            rows = tx.rows(sql + " ORDER BY f.name LIMIT ?", [*params, limit])
        return [_feed_row(row) for row in rows]

    def feed_row(self, name: str) -> FeedRow | None:
        with self._read() as tx:
            rows = tx.rows(f"{FEED_ROW} WHERE f.name = ?", [name])
        return _feed_row(rows[0]) if rows else None

    def item_counts(self) -> dict[str, int]:
        with self._read() as tx:
            rows = tx.execute("SELECT feed, count(*) FROM items GROUP BY feed").fetchall()
        return {feed: int(count) for feed, count in rows}

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
        with self._write() as tx:
            self._ensure_feed(tx, name, url, now)
            row = tx.execute(
                "UPDATE feeds SET last_poll = ?, last_error = ?, failures = failures + 1,"
                " next_poll = ?, gone = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE name = ? RETURNING failures",
                [timestamp(now), error, retry_at and timestamp(retry_at), int(gone), name],
            ).fetchone()
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
        next_poll: datetime | None = None,
    ) -> None:
        poll = Unchanged(name, url, now, etag, last_modified, moved_to, next_poll)
        with self._write() as tx:
            self._unchanged(tx, poll)

    def record_unchanged_many(self, polls: Sequence[Unchanged]) -> None:
        for chunk in _chunks(polls):
            with self._write() as tx:
                for poll in chunk:
                    self._unchanged(tx, poll)

    def _unchanged(self, tx: Tx, poll: Unchanged) -> None:
        marks = (poll.etag, poll.last_modified, poll.moved_to)
        if not _mark_success(
            tx, poll.name, poll.now, *marks, next_poll=poll.next_poll, url=poll.url
        ):
            self._ensure_feed(tx, poll.name, poll.url, poll.now)  # new, or its URL changed
            _mark_success(tx, poll.name, poll.now, *marks, next_poll=poll.next_poll)

    def _ensure_feed(self, tx: Tx, name: str, url: str, now: datetime) -> None:
        """The feed's row; a new URL drops what was known of the old one but the baseline."""
        row = tx.execute("SELECT url FROM feeds WHERE name = ?", [name]).fetchone()
        if row is None:
            tx.execute(
                "INSERT INTO feeds (name, url, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                [name, url, timestamp(now)],
            )
        elif row[0] != url:
            tx.execute(
                "UPDATE feeds SET url = ?, etag = NULL, last_modified = NULL, body_hash = NULL,"
                " gone = 0, moved_to = NULL, failures = 0 WHERE name = ?",
                [url, name],
            )

    # items

    def unseen(self, feed: str, keys: Sequence[str]) -> set[str]:
        known: set[str] = set()
        with self._read() as tx:
            for chunk in _chunks(keys):
                rows = tx.execute(
                    f"SELECT key FROM items WHERE feed = ? AND key IN ({_marks(chunk)})",
                    [feed, *chunk],
                ).fetchall()
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
        next_poll: datetime | None = None,
    ) -> int:
        stamp = timestamp(now)
        created = 0
        items = list(new_items)
        with self._write() as tx:
            self._ensure_feed(tx, feed, url, now)
            quiet = [
                _item_row(feed, i.entry, stamp, article=PENDING if i.article else None)
                for i in items
                if not i.matches
            ]
            if quiet:  # most items match nothing: stored in one statement
                tx.executemany(INSERT_ITEM, quiet)
            self._lock_stories(tx, _story_locks(item.matches for item in items))
            for item in items:
                if not item.matches:
                    continue
                canonical = canonical_link(item.entry.link)
                row = tx.execute(
                    INSERT_ITEM + " RETURNING id", _item_row(feed, item.entry, stamp, canonical)
                ).fetchone()
                if row is None:
                    continue
                entry = item.entry
                report = stories.report_of(entry.title, entry.summary or entry.content)
                for match in item.matches:
                    created += _record_match(
                        tx, int(row[0]), feed, canonical, match, report, now, stamp
                    )
            for chunk in _chunks(present):
                tx.execute(
                    f"UPDATE items SET last_seen = ? WHERE feed = ? AND key IN ({_marks(chunk)})",
                    [stamp, feed, *chunk],
                )
            tx.execute(
                "UPDATE feeds SET baseline_done = 1, last_full_poll = ? WHERE name = ?",
                [stamp, feed],
            )
            _mark_success(tx, feed, now, etag, last_modified, moved_to, body_hash, next_poll)
        return created

    # articles of full_text feeds

    def claim_articles(self, now: datetime, limit: int, lease: timedelta) -> list[PendingArticle]:
        if limit <= 0:
            return []
        stamp, until = timestamp(now), timestamp(now + lease)
        free = (  # and no item of its story waits for another try of their page
            "article = 'pending' AND (article_until IS NULL OR article_until <= ?)"
            " AND feed IN (SELECT name FROM feeds WHERE active = 1)"
            " AND NOT EXISTS (SELECT 1 FROM items w WHERE w.canonical = items.canonical"
            " AND w.article = 'pending' AND w.article_tries > 0 AND w.article_until > ?)"
        )
        returning = f" RETURNING id, canonical, article_tries, {ITEM_COLUMNS}"
        with self._write() as tx:
            rows = tx.rows(
                "UPDATE items SET article_until = ? WHERE id IN (SELECT id FROM items"
                f" WHERE {free} ORDER BY id LIMIT ?{self.lock_rows}){returning}",
                [until, stamp, stamp, limit],
            )
            stories = sorted({row["canonical"] for row in rows if row["canonical"]})
            for chunk in _chunks(stories):
                rows += tx.rows(
                    "UPDATE items SET article_until = ? WHERE id IN (SELECT id FROM items"
                    f" WHERE {free} AND canonical IN ({_marks(chunk)}){self.lock_rows})"
                    f"{returning}",
                    [until, stamp, stamp, *chunk],
                )
        rows.sort(key=lambda row: row["id"])
        return [
            PendingArticle(
                row["id"], row["feed"], entry_of(row), row["canonical"] or "", row["article_tries"]
            )
            for row in rows
        ]

    def release_articles(
        self, item_ids: Sequence[int], until: datetime | None = None, *, tried: bool = False
    ) -> None:
        with self._write() as tx:
            for chunk in _chunks(list(item_ids)):
                tx.execute(
                    "UPDATE items SET article_until = ?, article_tries = article_tries + ?"
                    f" WHERE id IN ({_marks(chunk)}) AND article = 'pending'",
                    [until and timestamp(until), int(tried), *chunk],
                )

    def fetched_article(self, canonical: str) -> str | None:
        if not canonical:
            return None
        with self._read() as tx:
            row = tx.execute(
                "SELECT content FROM items WHERE canonical = ? AND article = 'fetched'"
                " ORDER BY id DESC LIMIT 1",
                [canonical],
            ).fetchone()
        return None if row is None else str(row[0] or "")

    def record_article(
        self,
        item_id: int,
        feed: str,
        entry: Entry,
        matches: Iterable[Match],
        now: datetime,
        *,
        fetched: bool,
    ) -> int | None:
        found = tuple(matches)
        stamp = timestamp(now)
        with self._write() as tx:
            self._lock_stories(tx, _story_locks([found]))
            done = tx.execute(
                "UPDATE items SET article = ?, article_until = NULL, content = ?, words = ?"
                " WHERE id = ? AND article = 'pending' RETURNING id",
                [
                    "fetched" if fetched else "failed",
                    entry.content,
                    item_words(feed, entry),
                    item_id,
                ],
            ).fetchone()
            if done is None:
                return None
            canonical = canonical_link(entry.link)
            report = stories.report_of(entry.title, entry.summary or entry.content)
            return sum(
                _record_match(tx, item_id, feed, canonical, match, report, now, stamp)
                for match in found
            )

    def item_count(self, feed: str | None = None) -> int:
        sql = "SELECT count(*) FROM items" + (" WHERE feed = ?" if feed else "")
        with self._read() as tx:
            return int(tx.execute(sql, [feed] if feed else []).fetchone()[0])

    def items_since(self, since: datetime, feed: str | None = None) -> Iterator[StoredItem]:
        sql = f"SELECT id, {ITEM_COLUMNS} FROM items WHERE first_seen >= ?"
        params: list[Any] = [timestamp(since)]
        if feed:
            sql += " AND feed = ?"
            params.append(feed)
        last: tuple[str, int] | None = None
        while True:  # in pages, so that no connection is held while the caller works
            page = sql
            bound = list(params)
            if last is not None:
                page += " AND (first_seen < ? OR (first_seen = ? AND id < ?))"
                bound += [last[0], last[0], last[1]]
            with self._read() as tx:
                rows = tx.rows(page + " ORDER BY first_seen DESC, id DESC LIMIT ?", [*bound, CHUNK])
            for row in rows:
                yield stored_item(row)
            if len(rows) < CHUNK:
                return
            last = (rows[-1]["first_seen"], rows[-1]["id"])

    @abstractmethod
    def _indexed_ids(
        self, tx: Tx, clauses: Sequence[Collection[SearchWord]], limit: int, below: int | None
    ) -> list[int]:
        """Ids of the items whose indexed words satisfy every clause, newest first."""

    def search_candidates(
        self, clauses: Sequence[Collection[SearchWord]], limit: int, before_id: int | None = None
    ) -> list[tuple[int, StoredItem]]:
        below = [] if before_id is None else [before_id]
        older = "" if before_id is None else " AND id < ?"
        with self._read() as tx:
            if clauses:
                if not all(clauses):
                    raise ValueError("a clause of a search needs at least one word")
                indexable = [[index_word(word, prefix) for word, prefix in c] for c in clauses]
                ids = self._indexed_ids(tx, indexable, limit, before_id)
                unindexed = tx.execute(  # few: only a hostile feed makes such items
                    f"SELECT id FROM items WHERE words IS NULL{older}", below
                ).fetchall()
                ids = sorted({*ids, *(row[0] for row in unindexed)}, reverse=True)[:limit]
                rows = []
                for chunk in _chunks(ids):
                    rows += tx.rows(
                        f"SELECT id, {ITEM_COLUMNS} FROM items WHERE id IN ({_marks(chunk)})",
                        chunk,
                    )
            else:
                rows = tx.rows(
                    f"SELECT id, {ITEM_COLUMNS} FROM items WHERE id > 0{older}"
                    " ORDER BY id DESC LIMIT ?",
                    [*below, limit],
                )
        rows.sort(key=lambda row: row["id"], reverse=True)
        return [(row["id"], stored_item(row)) for row in rows]

    def _matches(self, tx: Tx, where: str, params: Sequence[Any]) -> list[StoredMatch]:
        rows = tx.rows(
            f"SELECT m.id AS match_id, m.rule, m.terms, m.detected_at, m.story_id,"
            f" {ITEM_COLUMNS_I}, (SELECT {self.concat_statuses} FROM deliveries d"
            "  WHERE d.match_id = m.id) AS deliveries"
            f" FROM matches m JOIN items i ON i.id = m.item_id WHERE {where}",
            params,
        )
        return [
            StoredMatch(
                rule=row["rule"],
                terms=tuple(json.loads(row["terms"] or "[]")),
                detected_at=from_timestamp(row["detected_at"]) or datetime.now(UTC),
                item=stored_item(row),
                deliveries=tuple(sorted((row["deliveries"] or "").split())),
                story=row["story_id"],
            )
            for row in rows
        ]

    def recent_matches(
        self, since: datetime, rule: str | None = None, limit: int = 100
    ) -> list[StoredMatch]:
        where = "m.detected_at >= ?"
        params: list[str | int] = [timestamp(since)]
        if rule:
            where += " AND m.rule = ?"
            params.append(rule)
        with self._read() as tx:
            return self._matches(tx, where + " ORDER BY m.id DESC LIMIT ?", [*params, limit])

    def stories(
        self, since: datetime, rule: str | None = None, limit: int = 100
    ) -> list[StoredStory]:
        where = "last_seen >= ?"
        params: list[str | int] = [timestamp(since)]
        if rule:
            where += " AND rule = ?"
            params.append(rule)
        with self._read() as tx:
            rows = tx.rows(
                f"SELECT id, rule, first_seen, last_seen FROM stories WHERE {where}"
                " ORDER BY last_seen DESC, id DESC LIMIT ?",
                [*params, limit],
            )
            return self._stories(tx, rows)

    def story(self, story_id: int) -> StoredStory | None:
        with self._read() as tx:
            rows = tx.rows(
                "SELECT id, rule, first_seen, last_seen FROM stories WHERE id = ?", [story_id]
            )
            found = self._stories(tx, rows)
        return found[0] if found else None

    def _stories(self, tx: Tx, rows: list[dict[str, Any]]) -> list[StoredStory]:
        """The stories of these rows, each with its reports."""
        reports: dict[int, list[StoredMatch]] = {}
        ids = [row["id"] for row in rows]
        for chunk in _chunks(ids):
            for match in self._matches(tx, f"m.story_id IN ({_marks(chunk)}) ORDER BY m.id", chunk):
                reports.setdefault(int(match.story or 0), []).append(match)
        return [
            StoredStory(
                id=row["id"],
                rule=row["rule"],
                first_seen=from_timestamp(row["first_seen"]) or datetime.now(UTC),
                last_seen=from_timestamp(row["last_seen"]) or datetime.now(UTC),
                reports=tuple(reports.get(row["id"], ())),
            )
            for row in rows
            if reports.get(row["id"])
        ]

    # deliveries

    def due_deliveries(
        self, now: datetime, notifiers: Iterable[str], limit: int = 200
    ) -> list[Delivery]:
        names = list(notifiers)
        if not names:
            return []
        with self._read() as tx:
            rows = tx.rows(
                "SELECT d.id, d.uid, d.notifier, d.attempts, d.created_at, m.rule, m.terms,"
                " m.hits, m.detected_at, m.story_id, i.key, i.title, i.link, i.summary,"
                " i.content, i.author, i.tags, i.published, f.name AS feed_name, f.url AS feed_url"
                " FROM deliveries d JOIN matches m ON m.id = d.match_id"
                " JOIN items i ON i.id = m.item_id JOIN feeds f ON f.name = i.feed"
                " WHERE d.status = 'pending' AND d.next_attempt <= ?"
                f" AND d.notifier IN ({_marks(names)})"
                " AND (d.lease_until IS NULL OR d.lease_until <= ?)"
                " ORDER BY d.id LIMIT ?",
                [timestamp(now), *names, timestamp(now), limit],
            )
            told = _story_reports(tx, sorted({row["story_id"] for row in rows if row["story_id"]}))
        return [_delivery(row, told) for row in rows]

    def release_leases(self) -> int:
        with self._write() as tx:
            tx.execute("UPDATE feeds SET lease_owner = NULL, lease_until = NULL")
            tx.execute("UPDATE notifier_leases SET owner = NULL, lease_until = NULL")
            tx.execute(
                "UPDATE items SET article_until = NULL WHERE article = 'pending'"
                " AND article_until IS NOT NULL AND article_tries = 0"
            )
            return tx.execute(
                "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL"
            ).rowcount

    def notifiers_due(self, now: datetime, notifiers: Iterable[str]) -> list[str]:
        names = list(notifiers)
        if not names:
            return []
        with self._read() as tx:
            rows = tx.execute(
                "SELECT DISTINCT notifier FROM deliveries WHERE status = 'pending'"
                f" AND next_attempt <= ? AND notifier IN ({_marks(names)})"
                " AND (lease_until IS NULL OR lease_until <= ?)",
                [timestamp(now), *names, timestamp(now)],
            ).fetchall()
        return sorted(row[0] for row in rows)

    def claim(self, delivery_ids: int | Sequence[int], now: datetime, lease: timedelta) -> bool:
        ids = _ids(delivery_ids)
        free = f"id IN ({_marks(ids)}) AND status = 'pending'"
        free += " AND (lease_until IS NULL OR lease_until <= ?)"
        try:
            with self._write() as tx:
                taken = tx.execute(
                    f"UPDATE deliveries SET lease_until = ? WHERE {free}",
                    [timestamp(now + lease), *ids, timestamp(now)],
                ).rowcount
                if taken != len(ids):
                    raise _NotAll
        except _NotAll:
            return False
        return True

    def mark_sent(
        self, delivery_ids: int | Sequence[int], now: datetime, note: str | None = None
    ) -> None:
        ids = _ids(delivery_ids)
        with self._write() as tx:
            tx.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                f" last_error = ?, lease_until = NULL WHERE id IN ({_marks(ids)})"
                " AND status = 'pending'",
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
        ids = _ids(delivery_ids)
        status = "pending" if retry_at is not None else "dead"
        with self._write() as tx:
            tx.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
                f" next_attempt = ?, lease_until = NULL WHERE id IN ({_marks(ids)})"
                " AND status = 'pending'",
                [status, error, timestamp(retry_at or now), *ids],
            )

    def deliveries(
        self, *, failed: bool = False, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        where, params = ["1 = 1"], []
        if failed:
            where.append("(d.status = 'dead' OR (d.status = 'pending' AND d.attempts > 0))")
        if status is not None:
            where.append("d.status = ?")
            params.append(status)
        with self._read() as tx:
            rows = tx.rows(
                "SELECT d.id, d.uid, d.notifier, d.status, d.attempts, d.next_attempt,"
                " d.sent_at, d.last_error, d.created_at, m.rule, i.feed, i.title"
                " FROM deliveries d JOIN matches m ON m.id = d.match_id"
                f" JOIN items i ON i.id = m.item_id WHERE {' AND '.join(where)}"
                " ORDER BY d.id DESC LIMIT ?",
                [*params, limit],
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

    def delivery_counts(self) -> dict[str, int]:
        with self._read() as tx:
            rows = tx.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
            return {status: int(count) for status, count in rows.fetchall()}

    # upkeep

    def prune(self, before: datetime) -> int:
        with self._write() as tx:
            ids = [
                row[0]
                for row in tx.execute(
                    "SELECT i.id FROM items i WHERE i.last_seen < ? AND NOT EXISTS ("
                    " SELECT 1 FROM matches m JOIN deliveries d ON d.match_id = m.id"
                    " WHERE m.item_id = i.id AND d.status = 'pending') AND NOT EXISTS ("
                    " SELECT 1 FROM feeds f WHERE f.name = i.feed"
                    " AND f.last_full_poll = i.last_seen)",
                    [timestamp(before)],
                ).fetchall()
            ]
            for chunk in _chunks(ids):
                marks = _marks(chunk)
                tx.execute(
                    "DELETE FROM deliveries WHERE match_id IN"
                    f" (SELECT id FROM matches WHERE item_id IN ({marks}))",
                    chunk,
                )
                tx.execute(f"DELETE FROM matches WHERE item_id IN ({marks})", chunk)
                tx.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
            grouping.prune(tx, before)
        return len(ids)

    def requeue(self, ids: Sequence[int], now: datetime) -> int:
        sql = (
            "UPDATE deliveries SET status = 'pending', next_attempt = ?, created_at = ?,"
            " lease_until = NULL WHERE status = 'dead'"
        )
        params: list[str | int] = [timestamp(now), timestamp(now)]
        if ids:
            sql += f" AND id IN ({_marks(ids)})"
            params.extend(ids)
        with self._write() as tx:
            return tx.execute(sql, params).rowcount

    def bury_orphans(self, notifiers: Sequence[str], reason: str, now: datetime) -> dict[str, int]:
        names = list(notifiers)
        keep = f" AND notifier NOT IN ({_marks(names)})" if names else ""
        with self._write() as tx:
            rows = tx.execute(
                "UPDATE deliveries SET status = 'dead', last_error = ?, lease_until = NULL,"
                f" next_attempt = ? WHERE status = 'pending'{keep} RETURNING notifier",
                [reason, timestamp(now), *names],
            ).fetchall()
        buried: dict[str, int] = {}
        for (notifier,) in rows:
            buried[notifier] = buried.get(notifier, 0) + 1
        return buried


class _NotAll(Exception):
    """A claim found a delivery already held or sent: its transaction is rolled back."""


def _feed_state(row: dict[str, Any]) -> FeedState:
    return FeedState(
        name=row["name"],
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
        lease_owner=row["lease_owner"],
    )


def _feed_row(row: dict[str, Any]) -> FeedRow:
    return FeedRow(_feed_state(row), row["url"], int(row["item_count"]))


def _mark_success(
    tx: Tx,
    name: str,
    now: datetime,
    etag: str | None,
    last_modified: str | None,
    moved_to: str | None,
    body_hash: str | None = None,
    next_poll: datetime | None = None,
    url: str | None = None,
) -> bool:
    """Record a successful poll on the feed's row; with ``url``, only if the row has that
    URL. Whether a row was updated."""
    return bool(
        tx.execute(
            "UPDATE feeds SET last_poll = ?, last_success = ?, last_error = NULL, failures = 0,"
            " next_poll = ?, gone = 0, etag = ?, last_modified = ?, moved_to = ?,"
            " body_hash = coalesce(?, body_hash), lease_owner = NULL, lease_until = NULL"
            " WHERE name = ? AND (CAST(? AS TEXT) IS NULL OR url = ?)",
            [
                timestamp(now),
                timestamp(now),
                next_poll and timestamp(next_poll),
                *(etag, last_modified, moved_to, body_hash, name, url, url),
            ],
        ).rowcount
    )


def _record_match(
    tx: Tx,
    item_id: int,
    feed: str,
    canonical: str | None,
    match: Match,
    report: stories.Report,
    now: datetime,
    stamp: str,
) -> int:
    """Record a match in its story: the story of an earlier match of the same link, else
    (when the rule groups reports) the open story it tells again, else a new one, which
    alone alerts. Return the number of deliveries created."""
    grouped: grouping.Grouped | None = None
    weighed: stories.Weights | None = None
    if match.stories:
        ignore = stories.ignored(match.words)
        looked = grouping.find(tx, match.rule, report, ignore, now, match.stories, canonical)
        earlier, weighed, grouped = looked
    else:
        earlier = grouping.earlier(tx, match.rule, canonical) if canonical else None
    held: frozenset[str] = frozenset()
    if earlier is not None:
        story, opened = grouping.also_in(tx, earlier, feed), False
        if match.stories:  # read before this report's match is recorded in the story
            held = grouping.held_words(tx, story)
    elif grouped is not None:
        story, opened, held = grouped.story, False, grouped.held
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rule %s, feed %s: %s", match.rule, feed, grouped.verdict.explain())
    else:
        story, opened = grouping.open_story(tx, match.rule, now), True
    match_id = _insert_match(tx, item_id, match, stamp, story, report)
    if match_id is None:
        if opened:
            tx.execute("DELETE FROM stories WHERE id = ?", [story])
        return 0
    indexed = bool(match.stories)
    with tx.together():  # the writes that follow, in one round trip
        if opened:
            _add_deliveries(tx, match_id, match.notify, stamp)
            if indexed:
                grouping.index_story(tx, story, match.rule, report, now, weighed)
        else:
            grouping.add_report(tx, story, match.rule, report, now, indexed=indexed, held=held)
    return len(match.notify) if opened else 0


def _story_locks(matches: Iterable[Sequence[Match]]) -> list[str]:
    """The locks an ingest takes before grouping its reports: one per rule, sorted so that
    two ingests take them in the same order (two reports of one story, ingested at once by
    two processes, then cannot both open it)."""
    return sorted({f"story {match.rule}" for found in matches for match in found})


def _insert_match(
    tx: Tx,
    item_id: int,
    match: Match,
    stamp: str,
    story: int | None = None,
    report: stories.Report = stories.EMPTY,
) -> int | None:
    """Insert a match; return its id, or None when the item already had a match of the
    rule."""
    row = tx.execute(
        "INSERT INTO matches (item_id, rule, terms, hits, detected_at, story_id, report)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id, rule) DO NOTHING RETURNING id",
        [
            item_id,
            match.rule,
            json.dumps(list(match.terms), ensure_ascii=False),
            json.dumps([list(hit) for hit in match.hits], ensure_ascii=False),
            stamp,
            story,
            report.encode(),
        ],
    ).fetchone()
    return None if row is None else int(row[0])


def _add_deliveries(tx: Tx, match_id: int, notifiers: Sequence[str], stamp: str) -> None:
    """A pending delivery of an alerting match to each of its rule's notifiers."""
    for notifier in notifiers:
        tx.execute(
            "INSERT INTO deliveries (uid, match_id, notifier, status, attempts,"
            " next_attempt, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
            [str(uuid.uuid4()), match_id, notifier, stamp, stamp],
        )


def _item_row(
    feed: str, entry: Entry, stamp: str, canonical: str | None = None, article: str | None = None
) -> list[Any]:
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
        item_words(feed, entry),
        article,
    ]


def item_words(feed: str, entry: Entry) -> str | None:
    """The distinct words the matcher sees in an item, in every field a query can name and
    in its feed's name, one space between them: what the search index holds of it. Words in
    other scripts are there in their Latin spelling too, for searches with ``transliterate``.
    None when they are more than ``MAX_WORDS``."""
    document = Document({**entry.searchable(), "feed": feed})
    tokens = [*document.tokens.values()]
    if document.latin is not document:
        tokens += document.latin.tokens.values()
    found = " ".join(dict.fromkeys(word[:MAX_WORD] for words in tokens for word in words))
    if len(found) > MAX_WORDS // 4 and len(found.encode()) > MAX_WORDS:
        return None
    return found


def index_word(word: str, prefix: bool) -> SearchWord:
    """A word of a search as the index holds it: cut at ``MAX_WORD`` as the stored words are
    (a word of the item equal to it, or starting with it, is still equal, or starts with it)."""
    if not word.isalnum():
        raise ValueError(f"{word!r} is not a normalised word")
    return (word[:MAX_WORD], prefix)


def fill_words(tx: Tx) -> None:
    """Fill in the words of items stored before the search index held them."""
    last = 0
    while True:
        rows = tx.rows(
            f"SELECT id, {ITEM_COLUMNS} FROM items WHERE words IS NULL AND id > ?"
            " ORDER BY id LIMIT ?",
            [last, CHUNK],
        )
        if not rows:
            return
        tx.executemany(
            "UPDATE items SET words = ? WHERE id = ?",
            [(item_words(row["feed"], entry_of(row)), row["id"]) for row in rows],
        )
        last = rows[-1]["id"]


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _ids(delivery_ids: int | Sequence[int]) -> list[int]:
    return [delivery_ids] if isinstance(delivery_ids, int) else list(delivery_ids)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def entry_of(row: dict[str, Any]) -> Entry:
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


def stored_item(row: dict[str, Any]) -> StoredItem:
    seen = from_timestamp(row["first_seen"]) or datetime.now(UTC)
    return StoredItem(row["feed"], entry_of(row), seen)


def _story_reports(tx: Tx, ids: Sequence[int]) -> dict[int, Story]:
    """The stories of these ids with their reports so far, in the order they came."""
    reports: dict[int, list[StoryReport]] = {}
    for chunk in _chunks(ids):
        rows = tx.rows(
            "SELECT m.story_id, m.detected_at, i.feed, i.title, i.link, i.published"
            " FROM matches m JOIN items i ON i.id = m.item_id"
            f" WHERE m.story_id IN ({_marks(chunk)}) ORDER BY m.id",
            chunk,
        )
        for row in rows:
            detected = from_timestamp(row["detected_at"]) or datetime.now(UTC)
            reports.setdefault(int(row["story_id"]), []).append(
                StoryReport(
                    feed=row["feed"],
                    title=row["title"] or "",
                    link=row["link"] or "",
                    published=from_timestamp(row["published"]),
                    detected_at=detected,
                )
            )
    return {story: Story(story, tuple(found)) for story, found in reports.items()}


def _delivery(row: dict[str, Any], stories_told: Mapping[int, Story] | None = None) -> Delivery:
    entry = entry_of(row)
    story = (stories_told or {}).get(row["story_id"]) if row.get("story_id") else None
    alert = Alert(
        delivery_id=row["uid"],
        rule=row["rule"],
        terms=tuple(json.loads(row["terms"] or "[]")),
        words=tuple(sorted({w for _, _, found in json.loads(row["hits"] or "[]") for w in found})),
        feed_name=row["feed_name"],
        feed_url=row["feed_url"],
        item=entry,
        detected_at=from_timestamp(row["detected_at"]) or datetime.now(UTC),
        story=story,
    )
    created = from_timestamp(row["created_at"]) or alert.detected_at
    return Delivery(row["id"], row["notifier"], row["attempts"], created, alert)
