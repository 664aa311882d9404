"""The PostgreSQL backend: any number of ``watcher run`` processes share one database.

Connections come from a psycopg pool. Reads run in autocommit; a write is one transaction.
Migrations run under an advisory lock, so processes that start together migrate once. Items
are deduplicated by unique constraints, so two processes can never both insert, or alert,
the same item.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from watcher.errors import StateError
from watcher.state import describe_database
from watcher.state.base import SearchWord
from watcher.state.sql import SQLStore, Tx, fill_words

CONNECT_TIMEOUT = 10
MIGRATION_LOCK = 0x77617463  # "watc": one advisory lock id for watcher's migrations

PIPELINES = psycopg.Pipeline.is_supported()
"""Whether the libpq under psycopg sends statements together (``_Tx.together``): from
libpq 14 on, which psycopg's binary package always has."""

FIRST_WINDOW = 2000
"""Ids a search reads first (see ``PostgresStore._indexed_ids``)."""


def _index_words(connection: psycopg.Connection[Any]) -> None:
    """Searches speak the rule query language, the same on both backends: the index holds
    each item's words as the matcher sees them, where ``to_tsvector('simple', ...)`` over the
    raw text kept accents (``Peskóv`` was not found by ``Peskov``) and HTML. ``words`` is a
    tsvector written from the text ``item_words`` gives (filled here for the items stored
    before): its input takes the words as they are, with no parser and no dictionary, sorted
    and without repeats; a plain column, so that ANALYZE knows how common each word is."""
    connection.execute("ALTER TABLE items ADD COLUMN words tsvector")
    fill_words(_Tx(connection))
    connection.execute("DROP INDEX items_search")
    connection.execute("ALTER TABLE items DROP COLUMN search")
    connection.execute("CREATE INDEX items_words ON items USING gin (words)")
    connection.execute("CREATE INDEX items_unindexed ON items (id) WHERE words IS NULL")


def _index_latin_spellings(connection: psycopg.Connection[Any]) -> None:
    """The index holds words of other scripts in their Latin spelling too (``transliterate``):
    the items with such words have theirs written again."""
    connection.execute("UPDATE items SET words = NULL WHERE words::text ~ '[^ -~]'")
    fill_words(_Tx(connection))


MIGRATIONS: list[tuple[str, str | Callable[[psycopg.Connection[Any]], None]]] = [
    (
        "create_core_tables",
        """
        CREATE TABLE feeds (
            name text PRIMARY KEY,
            url text NOT NULL,
            etag text,
            last_modified text,
            baseline_done integer NOT NULL DEFAULT 0,
            last_poll text,
            last_success text,
            last_error text,
            failures integer NOT NULL DEFAULT 0,
            created_at text,
            next_poll text,
            gone integer NOT NULL DEFAULT 0,
            moved_to text,
            body_hash text
        );
        CREATE TABLE items (
            id bigserial PRIMARY KEY,
            feed text NOT NULL,
            key text NOT NULL,
            title text,
            link text,
            canonical text,
            summary text,
            content text,
            author text,
            tags text,
            published text,
            first_seen text,
            last_seen text,
            search tsvector GENERATED ALWAYS AS (to_tsvector('simple',
                coalesce(title, '') || ' ' || coalesce(summary, '') || ' ' || coalesce(content, '')
            )) STORED,
            UNIQUE (feed, key)
        );
        CREATE INDEX items_canonical ON items (canonical);
        CREATE INDEX items_first_seen ON items (first_seen);
        CREATE INDEX items_search ON items USING gin (search);
        CREATE TABLE matches (
            id bigserial PRIMARY KEY,
            item_id bigint NOT NULL REFERENCES items (id),
            rule text NOT NULL,
            terms text,
            hits text,
            detected_at text,
            also_in text,
            UNIQUE (item_id, rule)
        );
        CREATE TABLE deliveries (
            id bigserial PRIMARY KEY,
            uid text NOT NULL UNIQUE,
            match_id bigint NOT NULL REFERENCES matches (id),
            notifier text NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            attempts integer NOT NULL DEFAULT 0,
            next_attempt text,
            last_error text,
            created_at text,
            sent_at text,
            lease_until text
        );
        CREATE INDEX deliveries_due ON deliveries (status, next_attempt);
        CREATE INDEX deliveries_notifier ON deliveries (notifier, status, id);
        CREATE INDEX deliveries_match ON deliveries (match_id);
        """,
    ),
    (
        "add_schedule",
        """
        ALTER TABLE feeds ADD COLUMN active integer NOT NULL DEFAULT 1;
        ALTER TABLE feeds ADD COLUMN lease_owner text;
        ALTER TABLE feeds ADD COLUMN lease_until text;
        CREATE INDEX feeds_due ON feeds (next_poll) WHERE active = 1 AND gone = 0;
        CREATE TABLE processes (
            id text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            started_at text NOT NULL,
            last_seen text NOT NULL
        );
        CREATE TABLE notifier_leases (
            notifier text PRIMARY KEY,
            owner text,
            lease_until text
        );
        """,
    ),
    (
        "mark_full_polls",
        """
        ALTER TABLE feeds ADD COLUMN last_full_poll text;
        UPDATE feeds SET last_full_poll =
            (SELECT max(last_seen) FROM items WHERE items.feed = feeds.name);
        """,
    ),
    (
        "index_pruning_and_leases",
        """
        CREATE INDEX items_last_seen ON items (last_seen);
        CREATE INDEX feeds_lease_owner ON feeds (lease_owner);
        """,
    ),
    ("index_the_words_the_matcher_sees", _index_words),
    ("index_latin_spellings", _index_latin_spellings),
    (
        "add_pending_articles",
        """
        ALTER TABLE items ADD COLUMN article text;
        ALTER TABLE items ADD COLUMN article_until text;
        CREATE INDEX items_article_pending ON items (id) WHERE article = 'pending';
        """,
    ),
    (
        "group_matches_into_stories",
        """
        CREATE TABLE stories (
            id bigserial PRIMARY KEY,
            rule text NOT NULL,
            first_seen text NOT NULL,
            last_seen text NOT NULL,
            reports integer NOT NULL DEFAULT 0
        );
        CREATE INDEX stories_last_seen ON stories (last_seen);
        CREATE INDEX stories_rule_last_seen ON stories (rule, last_seen);
        INSERT INTO stories (id, rule, first_seen, last_seen, reports)
            SELECT id, rule, coalesce(detected_at, ''), coalesce(detected_at, ''), 1
            FROM matches;
        SELECT setval(pg_get_serial_sequence('stories', 'id'),
            greatest((SELECT max(id) FROM stories), 1),
            (SELECT max(id) FROM stories) IS NOT NULL);
        ALTER TABLE matches ADD COLUMN story_id bigint REFERENCES stories (id);
        ALTER TABLE matches ADD COLUMN report text;
        UPDATE matches SET story_id = id;
        CREATE INDEX matches_story_id ON matches (story_id);
        CREATE TABLE story_keys (
            rule text NOT NULL,
            word text NOT NULL,
            opened text NOT NULL,
            story_id bigint NOT NULL
        );
        CREATE INDEX story_keys_lookup ON story_keys (rule, word, opened) INCLUDE (story_id);
        CREATE INDEX story_keys_story_id ON story_keys (story_id);
        CREATE TABLE story_words (
            rule text NOT NULL,
            word text NOT NULL,
            day text NOT NULL,
            stories integer NOT NULL,
            PRIMARY KEY (rule, word, day)
        );
        """,
    ),
    (
        "count_article_tries",
        "ALTER TABLE items ADD COLUMN article_tries integer NOT NULL DEFAULT 0;",
    ),
]


@functools.lru_cache(maxsize=512)
def _dialect(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Tx:
    """A psycopg connection behind the ``Tx`` protocol of sql.py."""

    each = "unnest(CAST(? AS text[])) AS listed(value)"

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def listed(self, values: Sequence[str]) -> list[str]:
        return list(values)

    def together(self) -> contextlib.AbstractContextManager[Any]:
        if PIPELINES:
            return self.connection.pipeline()
        return contextlib.nullcontext()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.connection.execute(_dialect(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(_dialect(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.connection.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(_dialect(sql), params).fetchall()


class PostgresStore(SQLStore):
    concat_statuses = "string_agg(d.notifier || ':' || d.status, ' ' ORDER BY d.notifier)"
    lock_rows = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.description = describe_database(url)
        parts = urlsplit(url)
        self.server = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT,
            name="watcher",
            open=False,
        )
        try:
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
        except psycopg.Error as exc:
            cause = self._scrub(str(exc).strip().splitlines()[-1].strip())
            raise StateError(f"cannot reach PostgreSQL at {self.server}: {cause}") from None
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            with self._pool.connection() as connection:
                _migrate(connection)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise self._error(exc) from None

    def _scrub(self, text: str) -> str:
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def _error(self, exc: Exception) -> StateError:
        message = self._scrub(" ".join(str(exc).split()))
        return StateError(f"PostgreSQL {self.server}: {message}")

    def _lock_stories(self, tx: Tx, keys: Sequence[str]) -> None:
        for key in keys:  # sorted by the caller: two ingests take them in the same order
            tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [key])

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Tx]:
        try:
            with self._pool.connection() as connection:
                yield _Tx(connection)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield _Tx(connection)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from exc

    def _probe(self) -> str | None:
        try:
            with self._pool.connection(timeout=2) as connection:
                row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            return str(self._error(exc))
        if row and row[0]:
            return f"PostgreSQL {self.server} is a read-only standby"
        return None

    def size(self) -> int:
        with self._read() as tx:
            row = tx.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def _indexed_ids(
        self, tx: Tx, clauses: Sequence[Collection[SearchWord]], limit: int, below: int | None
    ) -> list[int]:
        """The matches in windows of ids, newest first, each four times the last, found
        through the GIN index with bitmap scans only. A GIN index gives matches in no order:
        left free, the planner walked the primary key backwards testing every row (0.2 s for
        a word in none of 100,000 items), and one query over every id brings back every
        match of a common word (3 s for ``a*`` in a million items). A window that finds
        nothing takes from 1 ms (2,000 ids) to 40 ms (a million)."""
        assert isinstance(tx, _Tx)
        query = " & ".join(
            "("
            + " | ".join(f"'{word}'" + (":*" if prefix else "") for word, prefix in sorted(c))
            + ")"
            for c in clauses
        )
        if below is None:
            below = int(tx.execute("SELECT max(id) FROM items").fetchall()[0][0] or 0) + 1
        found: list[int] = []
        with tx.connection.transaction():
            for plan in ("indexscan", "indexonlyscan", "seqscan"):
                tx.execute(f"SET LOCAL enable_{plan} = off")
            window = FIRST_WINDOW
            while below > 1 and len(found) < limit:
                start = max(below - window, 1)
                rows = tx.execute(
                    "SELECT id FROM items WHERE words @@ CAST(? AS tsquery) AND id >= ? AND id < ?",
                    [query, start, below],
                ).fetchall()
                found += sorted((int(row[0]) for row in rows), reverse=True)
                below, window = start, window * 4
        return found[:limit]

    def close(self) -> None:
        self._pool.close()


def _migrate(connection: psycopg.Connection[Any]) -> None:
    """Apply the migrations not yet applied, each in its own transaction, under an advisory
    lock: the first process to start migrates, the others wait and find nothing to do."""
    connection.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS watcher_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in connection.execute("SELECT name FROM watcher_migrations")}
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            with connection.transaction():
                if callable(sql):
                    sql(connection)
                else:
                    connection.execute(sql)
                connection.execute("INSERT INTO watcher_migrations (name) VALUES (%s)", [name])
    finally:
        connection.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
