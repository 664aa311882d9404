"""The SQLite backend: one process polls (``DatabaseLock``), any number of commands read.

Polls run in worker threads and a sqlite3 connection must stay in its thread, so each thread
gets its own, closed once the thread has ended. Writes of this process's threads take turns
on a lock of the process, so they never meet in SQLite's busy handler, which sleeps; a write
opens with ``BEGIN IMMEDIATE``, so that another process (a command such as ``watcher retry``)
is waited for (``busy_timeout``) instead of failing at once with "database is locked".
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from watcher.errors import StateError
from watcher.state.base import SearchWord
from watcher.state.sql import SQLStore, Tx, fill_words

BUSY_TIMEOUT = 30.0
PROBE_TIMEOUT = 1.0
_DAMAGE = (sqlite3.Error, UnicodeDecodeError)
"""What reading a damaged file raises: SQLite's errors, and text whose bytes were hit."""

MIGRATION_SET = "watcher"


def _index_words(connection: sqlite3.Connection) -> None:
    """Searches speak the rule query language, the same on both backends: the full-text
    index holds each item's words as the matcher sees them (``items.words``, filled here for
    the items stored before), instead of the raw title, summary and content. The ``ascii``
    tokenizer splits them at the spaces only (every non-ASCII character is part of a word),
    and with ``detail=none`` the index keeps no positions, which a search never asks for.
    (Indexing the prefixes of one and two characters made ``a*`` take 0.3 ms instead of 0.3 s
    in a million items, but storing items 50 % slower.)"""
    for statement in _statements(
        """
        DROP TRIGGER IF EXISTS items_ai;
        DROP TRIGGER IF EXISTS items_ad;
        DROP TRIGGER IF EXISTS items_au;
        DROP TABLE IF EXISTS items_fts;
        ALTER TABLE items ADD COLUMN words TEXT;
        """
    ):
        connection.execute(statement)
    fill_words(_Tx(connection))
    for statement in _statements(
        """
        CREATE VIRTUAL TABLE items_words USING FTS5 (words, content='items',
            content_rowid='id', tokenize='ascii', detail='none', columnsize=0);
        INSERT INTO items_words (items_words) VALUES ('rebuild');
        CREATE TRIGGER items_words_ai AFTER INSERT ON items BEGIN
            INSERT INTO items_words (rowid, words) VALUES (new.id, new.words);
        END;
        CREATE TRIGGER items_words_ad AFTER DELETE ON items BEGIN
            INSERT INTO items_words (items_words, rowid, words)
            VALUES ('delete', old.id, old.words);
        END;
        CREATE TRIGGER items_words_au AFTER UPDATE OF words ON items BEGIN
            INSERT INTO items_words (items_words, rowid, words)
            VALUES ('delete', old.id, old.words);
            INSERT INTO items_words (rowid, words) VALUES (new.id, new.words);
        END;
        CREATE INDEX idx_items_unindexed ON items (id) WHERE words IS NULL;
        """
    ):
        connection.execute(statement)


def _index_latin_spellings(connection: sqlite3.Connection) -> None:
    """The index holds words of other scripts in their Latin spelling too (``transliterate``):
    the items with such words have theirs written again."""
    connection.execute("UPDATE items SET words = NULL WHERE words GLOB '*[^ -~]*'")
    fill_words(_Tx(connection))


MIGRATIONS: list[tuple[str, str | Callable[[sqlite3.Connection], None]]] = [
    (
        "create_core_tables",
        """
        CREATE TABLE feeds (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            baseline_done INTEGER NOT NULL DEFAULT 0,
            last_poll TEXT,
            last_success TEXT,
            last_error TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            created_at TEXT
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            feed TEXT NOT NULL,
            key TEXT NOT NULL,
            title TEXT,
            link TEXT,
            summary TEXT,
            content TEXT,
            author TEXT,
            tags TEXT,
            published TEXT,
            first_seen TEXT,
            last_seen TEXT
        );
        CREATE UNIQUE INDEX idx_items_feed_key ON items (feed, key);
        CREATE VIRTUAL TABLE items_fts USING FTS5 (title, summary, content, content="items");
        CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
            INSERT INTO items_fts (rowid, title, summary, content)
            VALUES (new.rowid, new.title, new.summary, new.content);
        END;
        CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN
            INSERT INTO items_fts (items_fts, rowid, title, summary, content)
            VALUES ('delete', old.rowid, old.title, old.summary, old.content);
        END;
        CREATE TRIGGER items_au AFTER UPDATE ON items BEGIN
            INSERT INTO items_fts (items_fts, rowid, title, summary, content)
            VALUES ('delete', old.rowid, old.title, old.summary, old.content);
            INSERT INTO items_fts (rowid, title, summary, content)
            VALUES (new.rowid, new.title, new.summary, new.content);
        END;
        CREATE TABLE matches (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items (id),
            rule TEXT NOT NULL,
            terms TEXT,
            detected_at TEXT
        );
        CREATE UNIQUE INDEX idx_matches_item_id_rule ON matches (item_id, rule);
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL,
            match_id INTEGER NOT NULL REFERENCES matches (id),
            notifier TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT,
            last_error TEXT,
            created_at TEXT,
            sent_at TEXT
        );
        CREATE UNIQUE INDEX idx_deliveries_uid ON deliveries (uid);
        CREATE INDEX idx_deliveries_status_next_attempt ON deliveries (status, next_attempt);
        CREATE INDEX idx_deliveries_notifier_status_id ON deliveries (notifier, status, id);
        """,
    ),
    (
        "add_match_hits",
        # Where each term matched (field and words), for highlighting and `watcher matches`.
        "ALTER TABLE matches ADD COLUMN hits TEXT;",
    ),
    (
        "add_leases_and_canonical_links",
        # A delivery being sent is leased; items keep their canonical link, so a story
        # reaching a rule through two feeds is alerted once and the match records the others.
        """
        ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
        ALTER TABLE items ADD COLUMN canonical TEXT;
        CREATE INDEX idx_items_canonical ON items (canonical);
        ALTER TABLE matches ADD COLUMN also_in TEXT;
        """,
    ),
    (
        "add_feed_health",
        # When a failing feed may be polled again, whether it is gone (410), where it moved,
        # and a hash of its last body (servers that ignore conditional GET resend the same).
        """
        ALTER TABLE feeds ADD COLUMN next_poll TEXT;
        ALTER TABLE feeds ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE feeds ADD COLUMN moved_to TEXT;
        ALTER TABLE feeds ADD COLUMN body_hash TEXT;
        """,
    ),
    (
        "add_schedule",
        # The schedule lives in the database: every feed's next poll, whether it is still
        # configured, and the process polling it under a lease; processes register
        # themselves; one process at a time sends a notifier's deliveries.
        """
        ALTER TABLE feeds ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE feeds ADD COLUMN lease_owner TEXT;
        ALTER TABLE feeds ADD COLUMN lease_until TEXT;
        CREATE INDEX idx_feeds_active_next_poll ON feeds (active, next_poll);
        CREATE TABLE processes (
            id TEXT PRIMARY KEY, host TEXT, pid INTEGER, started_at TEXT, last_seen TEXT
        );
        CREATE TABLE notifier_leases (notifier TEXT PRIMARY KEY, owner TEXT, lease_until TEXT);
        """,
    ),
    (
        "reindex_only_text_and_mark_full_polls",
        # The full-text index is updated only when an item's text changes (its trigger fired
        # on every update, so marking the items still in a feed re-indexed them all), and a
        # feed records its last full poll: the items it listed are still in the feed, so a
        # 304 need not touch them.
        """
        DROP TRIGGER IF EXISTS items_au;
        CREATE TRIGGER items_au AFTER UPDATE OF title, summary, content ON items BEGIN
            INSERT INTO items_fts (items_fts, rowid, title, summary, content)
            VALUES ('delete', old.rowid, old.title, old.summary, old.content);
            INSERT INTO items_fts (rowid, title, summary, content)
            VALUES (new.rowid, new.title, new.summary, new.content);
        END;
        ALTER TABLE feeds ADD COLUMN last_full_poll TEXT;
        UPDATE feeds SET last_full_poll =
            (SELECT max(last_seen) FROM items WHERE items.feed = feeds.name);
        """,
    ),
    (
        "index_pruning_and_leases",
        # Retention finds old items by last_seen, deletes deliveries by their match (and so
        # does the foreign key check of each deleted match); leases are found by owner.
        """
        CREATE INDEX idx_items_last_seen ON items (last_seen);
        CREATE INDEX idx_deliveries_match_id ON deliveries (match_id);
        CREATE INDEX idx_feeds_lease_owner ON feeds (lease_owner);
        """,
    ),
    ("index_the_words_the_matcher_sees", _index_words),
    ("index_latin_spellings", _index_latin_spellings),
    (
        "add_pending_articles",
        # Items of full_text feeds wait for their article before they are matched: the
        # article's state, and the lease of the process fetching it; the pending ones are
        # the queue.
        """
        ALTER TABLE items ADD COLUMN article TEXT;
        ALTER TABLE items ADD COLUMN article_until TEXT;
        CREATE INDEX idx_items_article_pending ON items (id) WHERE article = 'pending';
        """,
    ),
    (
        "group_matches_into_stories",
        # Reports of one story from several outlets alert a rule once: every match belongs
        # to a story of its rule (each match recorded before is a story of its own); a
        # match keeps the words its report was compared by; stories are looked up by their
        # words (story_keys), and words weigh by how many of a rule's stories hold them
        # (story_words, per day).
        """
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            reports INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX idx_stories_last_seen ON stories (last_seen);
        CREATE INDEX idx_stories_rule_last_seen ON stories (rule, last_seen);
        INSERT INTO stories (id, rule, first_seen, last_seen, reports)
            SELECT id, rule, coalesce(detected_at, ''), coalesce(detected_at, ''), 1
            FROM matches;
        ALTER TABLE matches ADD COLUMN story_id INTEGER REFERENCES stories (id);
        ALTER TABLE matches ADD COLUMN report TEXT;
        UPDATE matches SET story_id = id;
        CREATE INDEX idx_matches_story_id ON matches (story_id);
        CREATE TABLE story_keys (
            rule TEXT NOT NULL,
            word TEXT NOT NULL,
            opened TEXT NOT NULL,
            story_id INTEGER NOT NULL
        );
        CREATE INDEX idx_story_keys_rule_word_opened
            ON story_keys (rule, word, opened, story_id);
        CREATE INDEX idx_story_keys_story_id ON story_keys (story_id);
        CREATE TABLE story_words (
            rule TEXT NOT NULL,
            word TEXT NOT NULL,
            day TEXT NOT NULL,
            stories INTEGER NOT NULL,
            PRIMARY KEY (rule, word, day)
        ) WITHOUT ROWID;
        """,
    ),
    (
        "count_article_tries",
        # A page that failed for a passing cause (a 5xx, a timeout) is fetched again a few
        # times before its item is matched on the feed's text: the tries so far.
        "ALTER TABLE items ADD COLUMN article_tries INTEGER NOT NULL DEFAULT 0;",
    ),
]
"""Ordered and named; each runs in its own transaction, recorded in ``_sqlite_migrations``
(the table sqlite-utils kept them in, so databases made before keep their record)."""


def migrate(connection: sqlite3.Connection) -> None:
    """Apply the migrations not yet applied. Each takes the write lock first and looks
    again, so two processes opening a new database together migrate it once."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS _sqlite_migrations"
        " (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT)"
    )
    connection.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS idx__sqlite_migrations_migration_set_name"
        " ON _sqlite_migrations (migration_set, name)"
    )
    for name, script in MIGRATIONS:
        connection.execute("BEGIN IMMEDIATE")
        try:
            done = connection.execute(
                "SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? AND name = ?",
                [MIGRATION_SET, name],
            ).fetchone()
            if not done:
                if callable(script):
                    script(connection)
                else:
                    for statement in _statements(script):
                        connection.execute(statement)
                connection.execute(
                    "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
                    " VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))",
                    [MIGRATION_SET, name],
                )
        except BaseException:
            _roll_back(connection)
            raise
        connection.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, split where SQLite says one is complete (a trigger's
    body holds semicolons of its own)."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement.strip()
            statement = ""


class _Tx:
    """A sqlite3 connection behind the ``Tx`` protocol of sql.py."""

    each = "json_each(?)"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def listed(self, values: Sequence[str]) -> str:
        return json.dumps(list(values), ensure_ascii=False)

    def together(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.connection.executemany(sql, rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.connection.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SQLiteStore(SQLStore):
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StateError(
                f"no database at {self.path.absolute()} yet: `watcher run` or `watcher once`"
                " makes it (settings.database names it)"
            )
        self.description = str(self.path)
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._probing = threading.Lock()
        self._probe_connection: sqlite3.Connection | None = None
        self._uri = f"file:{quote(str(self.path.absolute()))}?mode=rw"
        """Every connection but the first opens the file without creating it: a file
        deleted under the daemon is not silently made anew, empty."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(self.path).close()
            connection = self._connection()
            connection.execute("PRAGMA journal_mode = WAL")
            migrate(connection)
            self._identity = _identity(self.path)
        except OSError as exc:
            raise StateError(f"cannot open the database {self.path}: {exc}") from exc
        except _DAMAGE as exc:
            raise state_error(self.path, exc) from exc

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self._uri,
                uri=True,
                timeout=BUSY_TIMEOUT,
                check_same_thread=False,
                isolation_level=None,
            )
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")
            # sorts and subquery results in memory: a long-lived connection put them in
            # temporary files (a story lookup took 0.25 ms instead of 0.08)
            connection.execute("PRAGMA temp_store = MEMORY")
            self._local.connection = connection
            with self._lock:
                self._close_finished()
                self._connections[threading.current_thread()] = connection
        return connection

    def _close_finished(self) -> None:
        """Close the connections of threads that ended (a health request's, a delivery
        pass's), so that open connections never outnumber the live threads."""
        for thread in [thread for thread in self._connections if not thread.is_alive()]:
            self._connections.pop(thread).close()

    def close(self) -> None:
        with self._probing:
            if self._probe_connection is not None:
                self._probe_connection.close()
                self._probe_connection = None
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Tx]:
        try:
            yield _Tx(self._connection())
        except _DAMAGE as exc:
            raise state_error(self.path, exc) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        try:
            with self._writing:
                self._check_file()
                connection = self._connection()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield _Tx(connection)
                except BaseException:
                    _roll_back(connection)
                    raise
                connection.execute("COMMIT")
        except _DAMAGE as exc:
            raise state_error(self.path, exc) from exc

    def _check_file(self) -> None:
        """Refuse to write once the path no longer names the file open: writes to a file
        deleted or replaced under the daemon would all be lost when it stops."""
        try:
            same = _identity(self.path) == self._identity
        except OSError:
            same = False
        if not same:
            raise StateError(
                f"database {self.path} was deleted or replaced while watcher had it open:"
                " nothing more is written to it; restore the file, or restart watcher"
            )

    def _probe(self) -> str | None:
        """A write lock taken and given back on a connection of the probe's own, waiting at
        most a second: a database busy with another process's write is not broken."""
        try:
            self._check_file()
            with self._probing:
                if self._probe_connection is None:
                    self._probe_connection = sqlite3.connect(
                        self._uri,
                        uri=True,
                        timeout=PROBE_TIMEOUT,
                        check_same_thread=False,
                        isolation_level=None,
                    )
                self._probe_connection.execute("BEGIN IMMEDIATE")
                self._probe_connection.execute("ROLLBACK")
        except StateError as exc:
            return str(exc)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            return f"database {self.path} not writable: {exc}"
        except _DAMAGE as exc:
            return f"database {self.path} not writable: {exc}"
        return None

    def size(self) -> int:
        files = self.path.parent.glob(f"{self.path.name}*")
        return sum(path.stat().st_size for path in files if not path.name.endswith(".lock"))

    def _indexed_ids(
        self, tx: Tx, clauses: Sequence[Collection[SearchWord]], limit: int, below: int | None
    ) -> list[int]:
        match = " AND ".join(
            "("
            + " OR ".join(f'"{word}"' + ("*" if prefix else "") for word, prefix in sorted(c))
            + ")"
            for c in clauses
        )
        rows = tx.execute(
            "SELECT rowid FROM items_words WHERE items_words MATCH ?"
            + ("" if below is None else " AND rowid < ?")
            + " ORDER BY rowid DESC LIMIT ?",
            [match, *([] if below is None else [below]), limit],
        ).fetchall()
        return [row[0] for row in rows]


def copy_database(source: Path, target: Path, *, in_use: bool) -> None:
    """A consistent copy of an SQLite database, read without a write to it. ``in_use``: a
    daemon has it open, so it is read as a live database (SQLite's online backup); else it
    is read as an immutable file, which leaves no -wal or -shm file behind."""
    live = in_use or Path(f"{source}-wal").exists()  # a crashed daemon's WAL still counts
    mode = "ro" if live else "ro&immutable=1"
    uri = f"file:{quote(str(source.absolute()))}?mode={mode}"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as origin:
            with contextlib.closing(sqlite3.connect(target)) as copy:
                origin.backup(copy)
    except _DAMAGE as exc:
        raise state_error(source, exc) from exc


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _roll_back(connection: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction. SQLite has already rolled back after
    some errors (a corrupt page, a full disk): the error that caused it is the one to tell."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def state_error(path: Path, exc: sqlite3.Error | UnicodeDecodeError) -> StateError:
    cause = "text that is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
    if isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, sqlite3.DatabaseError)
        and ("malformed" in cause or "not a database" in cause or "vtable constructor" in cause)
    ):
        cause += " (the file is damaged: restore it from a backup, or move it away to start afresh)"
    return StateError(f"database {path}: {cause}")
