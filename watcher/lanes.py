"""Every feed of a cycle polled once, with as many threads as pay (``watcher once``).

Two limits shape it. A host takes at most ``PER_HOST`` requests at once, so its feeds are
taken one after another by at most that many threads, and no thread waits for a host's slot.
And a poll is mostly Python, which runs on one core at a time: threads beyond those that
keep the interpreter busy only take turns for its lock (16 threads polled 1,000 feeds on
loopback in 1.2 s, 2 threads in 0.85 s). So the cycle starts with ``START`` threads and adds
one while polls spend far longer than their own CPU time would explain with the threads
there are: waiting for the network, which more threads overlap. Feeds across the internet
soon get ``concurrency`` threads; feeds that answer at once keep two.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from watcher.config import FeedConfig
from watcher.poll import PER_HOST, PollOutcome, host_of

START = 2
"""Threads a cycle starts with."""
GROWTH = 1.5
"""A thread is added while a poll's time is more than this many times its CPU time for each
thread polling: the time not spent taking turns for the interpreter is spent waiting."""
SMOOTHING = 0.2
"""Weight of the latest poll in the running ratio of time to CPU time."""


def poll_all(
    pool: ThreadPoolExecutor,
    limit: int,
    feeds: Sequence[FeedConfig],
    poll: Callable[[FeedConfig], PollOutcome],
) -> list[PollOutcome]:
    """Every feed polled once, on at most ``limit`` threads of ``pool``; the outcomes in the
    feeds' order."""
    return _Lanes(pool, feeds, poll, limit).run()


class _Lanes:
    def __init__(
        self,
        pool: ThreadPoolExecutor,
        feeds: Sequence[FeedConfig],
        poll: Callable[[FeedConfig], PollOutcome],
        limit: int,
    ) -> None:
        self.pool = pool
        self.poll = poll
        self.limit = max(1, limit)
        self.queues: dict[str, deque[tuple[int, FeedConfig]]] = {}
        for index, feed in enumerate(feeds):
            self.queues.setdefault(host_of(feed.url), deque()).append((index, feed))
        self.hosts = deque(self.queues)
        """Hosts in the order they are offered, turn by turn."""
        self.busy: Counter[str] = Counter()
        self.outcomes: list[PollOutcome | None] = [None] * len(feeds)
        self.ratio: float | None = None
        """Running ratio of a poll's time to its CPU time."""
        self.threads = 0
        """Threads polling now."""
        self.futures: list[Future[None]] = []
        self.lock = threading.Lock()

    def run(self) -> list[PollOutcome]:
        with self.lock:
            for _ in range(min(START, self.limit)):
                self._add_thread()
        waited = 0
        while True:
            with self.lock:
                pending = self.futures[waited:]
            if not pending:
                break
            for future in pending:
                future.result()
            waited += len(pending)
        return [outcome for outcome in self.outcomes if outcome is not None]

    def _add_thread(self) -> None:
        self.threads += 1
        self.futures.append(self.pool.submit(self._work))

    def _work(self) -> None:
        try:
            while (taken := self._take()) is not None:
                host, index, feed = taken
                started, cpu = time.perf_counter(), time.thread_time()
                try:
                    self.outcomes[index] = self.poll(feed)
                finally:
                    self._done(host, time.perf_counter() - started, time.thread_time() - cpu)
        finally:
            with self.lock:
                self.threads -= 1

    def _take(self) -> tuple[str, int, FeedConfig] | None:
        """The next feed of a host with a free slot, hosts taking turns; None when there is
        none (the hosts left are busy with threads that go on with their feeds)."""
        with self.lock:
            for _ in range(len(self.hosts)):
                host = self.hosts[0]
                self.hosts.rotate(-1)
                queue = self.queues[host]
                if queue and self.busy[host] < PER_HOST:
                    self.busy[host] += 1
                    index, feed = queue.popleft()
                    return host, index, feed
            return None

    def _done(self, host: str, elapsed: float, cpu: float) -> None:
        ratio = elapsed / max(cpu, 1e-6)
        with self.lock:
            self.busy[host] -= 1
            self.ratio = (
                ratio if self.ratio is None else ((1 - SMOOTHING) * self.ratio + SMOOTHING * ratio)
            )
            waiting = self.ratio > GROWTH * self.threads
            if waiting and self.threads < self.limit and self._work_left():
                self._add_thread()

    def _work_left(self) -> bool:
        return any(self.queues.values())
