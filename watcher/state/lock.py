"""One process at a time polls an SQLite database: an exclusive lock file beside it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from watcher.errors import StateError


class DatabaseLock:
    """An exclusive lock beside an SQLite database, held by the one process that polls it.
    PostgreSQL needs none: any number of processes share it, each feed leased to one.

    flock is released by the kernel when the process dies, so a crash leaves no stale lock.
    """

    def __init__(self, database: str | Path) -> None:
        shared = str(database).startswith(("postgresql://", "postgres://"))
        self.path = None if shared else Path(f"{database}.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
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
        if self.path is None or not self.path.exists():
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
