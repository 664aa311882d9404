"""The state: feeds, items, matches and the outbox. The only package that writes SQL.

``open_store`` opens the backend that ``settings.database`` names: a path for SQLite (one
polling process), a ``postgresql://`` URL for PostgreSQL (any number of them).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from watcher.state.base import (
    FEED_STATUSES,
    Articles,
    Delivery,
    DeliveryRow,
    FeedRow,
    FeedState,
    NewItem,
    Outbox,
    PendingArticle,
    PollState,
    Process,
    Reports,
    Schedule,
    ScheduledFeed,
    Store,
    StoredItem,
    StoredMatch,
    StoredStory,
    Unchanged,
    Upkeep,
    from_timestamp,
    timestamp,
)
from watcher.state.lock import DatabaseLock

__all__ = [
    "FEED_STATUSES",
    "Articles",
    "DatabaseLock",
    "Delivery",
    "DeliveryRow",
    "FeedRow",
    "FeedState",
    "NewItem",
    "Outbox",
    "PendingArticle",
    "PollState",
    "Process",
    "Reports",
    "Schedule",
    "ScheduledFeed",
    "Store",
    "StoredItem",
    "StoredMatch",
    "StoredStory",
    "Unchanged",
    "Upkeep",
    "describe_database",
    "from_timestamp",
    "is_postgres",
    "open_store",
    "timestamp",
]


def describe_database(database: str | Path) -> str:
    """The database for people: an absolute path, or the URL without its password."""
    text = str(database)
    if not is_postgres(text):
        return str(Path(text).absolute())
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def open_store(database: str | Path, *, create: bool = True, connections: int = 20) -> Store:
    """The store of a database setting: a path (SQLite) or a ``postgresql://`` URL.
    ``create`` False (the commands that only look): a missing SQLite file is an error
    saying where it was looked for, never a new, empty database. ``connections``: the most
    a PostgreSQL pool opens (SQLite opens one per thread)."""
    if is_postgres(str(database)):
        from watcher.state.postgres import PostgresStore

        return PostgresStore(str(database), pool_size=connections)
    from watcher.state.sqlite import SQLiteStore

    return SQLiteStore(database, create=create)
