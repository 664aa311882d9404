"""Which feeds this process polls, and when: claimed from the database, polled on a pool.

The database holds each feed's next poll. The scheduler claims the due feeds it has room
for, under a lease, and polls each on a worker thread; recording the poll sets the feed's
next time and ends the lease. Several processes on one PostgreSQL run the same loop: each
claim skips the feeds another holds, so a feed is polled about once per interval in all,
and the feeds of a process that died are taken over once its leases run out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from watcher.errors import StateError
from watcher.state import Schedule

log = logging.getLogger(__name__)

IDLE = 1.0
"""Longest the loop sleeps between looks at the schedule: feeds added by another process or
a reload, and leases that ran out, are seen this soon."""
TROUBLE_EVERY = 60.0
"""While the database cannot be reached, one log line per this many seconds."""


class Trouble:
    """A lasting problem told once a minute, not at every attempt, and its end told once."""

    def __init__(self, what: str, every: float = TROUBLE_EVERY) -> None:
        self.what = what
        self.every = every
        self.since: float | None = None
        self.told = 0.0

    def failed(self, exc: Exception) -> None:
        moment = time.monotonic()
        if self.since is None:
            self.since = moment
        if moment - self.told >= self.every:
            self.told = moment
            log.error(
                "%s paused: the database cannot be used: %s (tried again until it works)",
                self.what,
                exc,
            )

    def succeeded(self) -> None:
        if self.since is not None:
            log.info("%s resumed after %.0fs", self.what, time.monotonic() - self.since)
        self.since = None
        self.told = 0.0


class FeedScheduler:
    """Claims due feeds and polls them, at most ``concurrency`` at once, until stopped."""

    def __init__(
        self,
        store: Schedule,
        owner: str,
        poll: Callable[[str], None],
        *,
        concurrency: int,
        lease: timedelta,
        clock: Callable[[], datetime],
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.owner = owner
        self.poll = poll
        self.concurrency = concurrency
        self.lease = lease
        self.clock = clock
        self.stopping = stopping
        self.trouble = Trouble("polling")
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="poll")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """Look at the schedule now (feeds were added, or a poll ended)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more and wait for the polls in flight (each ends by its deadline)."""
        self.stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)  # queued polls: leases given back

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                self._claim()
                wait = self._until_due()
                self.trouble.succeeded()
            except StateError as exc:
                self.trouble.failed(exc)
                wait = IDLE
            except Exception:  # a bug: logged, and the loop goes on, or polling would stop
                log.exception("scheduling failed")
                wait = IDLE
            self._wake.wait(wait)

    def _claim(self) -> None:
        with self._lock:
            room = self.concurrency - len(self._in_flight)
        if room <= 0:
            return
        for name in self.store.claim_feeds(self.owner, self.clock(), room, self.lease):
            with self._lock:
                if name in self._in_flight:
                    continue  # a poll that outlived its lease: the claim renewed it
                self._in_flight.add(name)
            self._pool.submit(self._poll, name)

    def _until_due(self) -> float:
        """Seconds to sleep: until the next feed is due, at most IDLE, at once if the last
        claim filled no slot because everything due was taken."""
        with self._lock:
            if len(self._in_flight) >= self.concurrency:
                return IDLE  # a poll ending wakes the loop
        due = self.store.next_due()
        if due is None:
            return IDLE
        return min(max((due - self.clock()).total_seconds(), 0.05), IDLE)

    def _poll(self, name: str) -> None:
        try:
            self.poll(name)
        except Exception:  # a bug: logged, and the feed's lease runs out to try again later
            log.exception("feed %s: poll failed", name)
        finally:
            with self._lock:
                self._in_flight.discard(name)
            self._wake.set()
