"""The outbox worker: sends due deliveries, records each outcome, schedules retries.

A delivery is marked sent only after its notifier returned, that is after the receiver
acknowledged it; a crash in between repeats it under the same delivery id, never loses it.
Each delivery is leased while it is sent, so two passes never send it at once, and a lease
left by a pass that died runs out and the delivery is taken back.

Each notifier drains its own queue, in detection order, in a thread of its own, and each
send ends by the notifier's deadline: a notifier that fails or hangs holds back nothing but
itself. Within a notifier, a delivery waiting for its retry (a backoff, or the receiver's
Retry-After) holds back the later ones, so the receiver hears nothing from that notifier
before the time it asked for; ``give_up`` counts a delivery's own failures, not the time it
waited behind another.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from watcher.config import Rate, RetrySettings
from watcher.errors import DeliveryError
from watcher.models import Alert, Digest
from watcher.notify.base import Notifier
from watcher.state import Delivery, Store
from watcher.text import one_line

log = logging.getLogger(__name__)

BATCH = 200
DIGEST_LIMIT = 10_000
"""Alerts one digest pass reads: far more than a window of a sane rule set holds."""
MAX_WAIT = 5.0
"""Longest a pass sleeps for a rate limit before it leaves the rest to the next pass."""
LEASE_MARGIN = timedelta(seconds=30)
NOTIFIER_LEASE = timedelta(seconds=30)
"""How long a process holds a notifier without renewing it: each wake renews the lease of
a notifier with deliveries due, so a process that died gives its notifiers up this soon."""
HORIZON = timedelta(days=36500)
"""Looking this far ahead, the outbox lists a notifier's whole queue, due or not."""


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    by_notifier: dict[tuple[str, str], int] = field(default_factory=dict)
    """(notifier, "sent" | "retrying" | "dead") -> deliveries, for the metrics."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def merge(self, other: DeliveryReport) -> None:
        for (notifier, result), count in other.by_notifier.items():
            self.add(notifier, result, count)

    def add(self, notifier: str, result: str, count: int = 1) -> None:
        with self.lock:
            setattr(self, result, getattr(self, result) + count)
            key = (notifier, result)
            self.by_notifier[key] = self.by_notifier.get(key, 0) + count


class RateLimiter:
    """A token bucket: at most ``rate.count`` sends per ``rate.period``, in bursts of up to
    ``count``. One per notifier, kept from pass to pass."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = float(rate.count)
        self.refill = rate.count / rate.period.total_seconds()
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def wait(self) -> float:
        """Seconds until a send is allowed (0 when it is allowed now)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.refill

    def take(self) -> None:
        self.tokens -= 1


def backoff(attempts: int, retry: RetrySettings, rng: random.Random | None = None) -> timedelta:
    """Delay before the next attempt after ``attempts`` failures: exponential, capped, with
    +/-25% jitter so that many deliveries failing together do not retry together."""
    base = retry.first.total_seconds() * 2 ** max(attempts - 1, 0)
    capped = min(base, retry.max.total_seconds())
    jitter = 0.75 + 0.5 * (rng or random).random()
    return timedelta(seconds=min(capped * jitter, retry.max.total_seconds()))


def failing_for(attempts: int, retry: RetrySettings) -> timedelta:
    """How long a delivery that failed ``attempts`` times has been failing, by its backoff
    schedule without jitter (a Retry-After or a pass held back only makes it longer)."""
    first, cap = retry.first.total_seconds(), retry.max.total_seconds()
    total = 0.0
    for done in range(1, attempts):
        step = min(first * 2 ** min(done - 1, 64), cap)
        total += step
        if step >= cap:  # the rest of the schedule is flat
            total += step * (attempts - 1 - done)
            break
    return timedelta(seconds=total)


@dataclass(frozen=True)
class Senders:
    """What delivering takes from the config: swapped whole at a reload, so a drain sees
    the old notifiers or the new ones, never a mix."""

    notifiers: Mapping[str, Notifier]
    limiters: Mapping[str, RateLimiter]
    retry: RetrySettings


def deliver_due(
    store: Store,
    notifiers: Mapping[str, Notifier],
    retry: RetrySettings,
    now: datetime,
    *,
    limiters: Mapping[str, RateLimiter] | None = None,
    stop: threading.Event | None = None,
    batch: int = BATCH,
    owner: str | None = None,
) -> DeliveryReport:
    """One pass: send every due delivery, each notifier's in its own thread and in
    detection order, and return when every notifier is done (each send ends by its
    notifier's deadline).

    ``now`` is the time of the pass (tests set it); it advances with the clock while the
    pass runs.
    """
    report = DeliveryReport()
    started = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    senders = Senders(notifiers, limiters or {}, retry)
    outbox = Outbox(
        store,
        lambda: senders,
        stop=stop or threading.Event(),
        clock=clock,
        on_report=report.merge,
        batch=batch,
        owner=owner,
    )
    outbox.wake()
    outbox.close()
    return report


class Outbox:
    """Delivers in the background: each notifier has a worker thread of its own, which
    drains the notifier's queue whenever ``wake`` finds something due for it.

    ``wake`` never waits, so a notifier whose receiver hangs until the deadline of each send
    holds back its own deliveries, never another notifier's, nor the next wake. A notifier
    that must wait for a retry (its receiver failed, or asked for a pause with Retry-After)
    is not drained again before that time. Workers live as long as their notifier, so a
    busy daemon keeps one thread (and one database connection) per notifier.
    """

    def __init__(
        self,
        store: Store,
        senders: Callable[[], Senders],
        *,
        stop: threading.Event,
        clock: Callable[[], datetime],
        on_report: Callable[[DeliveryReport], None] | None = None,
        batch: int = BATCH,
        owner: str | None = None,
    ) -> None:
        self.owner = owner
        """The process id under which notifiers are leased, when processes share the
        outbox: one process at a time sends a notifier's deliveries."""
        self.store = store
        self.senders = senders
        self.stop = stop
        self.clock = clock
        self.on_report = on_report
        self.batch = batch
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._paused: dict[str, datetime] = {}
        self._closing = False

    def wake(self) -> None:
        """Have every notifier with a delivery due drain its queue; a worker busy now
        looks again when it is done."""
        if self.stop.is_set():
            return
        now = self.clock()
        with self._lock:
            ready = [
                name for name in self.senders().notifiers if self._paused.get(name, now) <= now
            ]
        due = self.store.notifiers_due(now, ready) if ready else []
        if self.owner is not None and due:
            due = self.store.claim_notifiers(self.owner, due, now, NOTIFIER_LEASE)
        with self._lock:
            if self._closing:
                return
            for name in due:
                worker = self._workers.get(name)
                if worker is None or not worker.thread.is_alive():
                    worker = self._workers[name] = _Worker(name, self._work)
                worker.wake.set()

    def close(self, timeout: float | None = None) -> list[str]:
        """Let each worker finish the drain it is in (every send ends by its deadline) and
        end; return the notifiers still sending when ``timeout`` ran out."""
        with self._lock:
            self._closing = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.wake.set()
        end = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            worker.thread.join(None if end is None else max(end - time.monotonic(), 0.0))
        return sorted(worker.name for worker in workers if worker.thread.is_alive())

    def _holds(self, name: str) -> bool:
        """Whether this process still sends the notifier (its lease renewed): processes
        sharing the outbox send a notifier's deliveries one at a time."""
        if self.owner is None:
            return True
        return self.store.claim_notifiers(self.owner, [name], self.clock(), NOTIFIER_LEASE) == [
            name
        ]

    def _work(self, worker: _Worker) -> None:
        name = worker.name
        while True:
            worker.wake.wait()
            worker.wake.clear()
            if self.stop.is_set():
                return
            senders = self.senders()
            notifier = senders.notifiers.get(name)
            if notifier is None:  # removed by a reload
                with self._lock:
                    if self._workers.get(name) is worker:
                        del self._workers[name]
                return
            report = DeliveryReport()
            drain = _Drain(
                self.store,
                senders.retry,
                self.clock,
                report,
                self.stop,
                self.batch,
                holds=functools.partial(self._holds, name),
            )
            drain(notifier, senders.limiters.get(name))
            with self._lock:
                if drain.paused_until is not None:
                    self._paused[name] = drain.paused_until
                else:
                    self._paused.pop(name, None)
            if self.on_report is not None:
                try:
                    self.on_report(report)
                except Exception:
                    log.exception("notifier %s: delivery report failed", name)
            if self._closing:
                return


class _Worker:
    """One notifier's thread, and the event that wakes it."""

    def __init__(self, name: str, work: Callable[[_Worker], None]) -> None:
        self.name = name
        self.wake = threading.Event()
        self.thread = threading.Thread(
            target=work, args=(self,), name=f"deliver {name}", daemon=True
        )
        self.thread.start()


@dataclass
class _Drain:
    """Sends one notifier's due deliveries until none is left, one fails and must wait, the
    rate limit asks for a long pause, or the daemon stops.

    Deliveries leave in detection order: the drain stops at the first one of the queue
    that is not due (waiting for its retry, or being sent by another pass), so a delivery
    waiting for its retry holds back the later ones of its notifier.
    """

    store: Store
    retry: RetrySettings
    clock: Callable[[], datetime]
    report: DeliveryReport
    stop: threading.Event
    batch: int
    holds: Callable[[], bool] = lambda: True
    """Whether the notifier is still this process's to send: asked before each send."""
    paused_until: datetime | None = None
    """When the receiver failed: no delivery of the notifier is due before this time."""

    def __call__(self, notifier: Notifier, limiter: RateLimiter | None) -> None:
        try:
            self._drain(notifier, limiter)
        except Exception:  # a bug must not kill the pass silently: log it, keep the outbox
            log.exception("notifier %s: delivery pass failed", notifier.name)

    def _queue(self, notifier: str, limit: int) -> tuple[list[Delivery], set[int]]:
        """The notifier's pending deliveries in order, due or not, and the ids of the due
        ones."""
        now = self.clock()
        queue = self.store.due_deliveries(now + HORIZON, [notifier], limit)
        due = {delivery.id for delivery in self.store.due_deliveries(now, [notifier], limit)}
        return queue, due

    def _drain(self, notifier: Notifier, limiter: RateLimiter | None) -> None:
        lease = timedelta(seconds=notifier.timeout * 2) + LEASE_MARGIN
        if notifier.options.digest:
            self._drain_digests(notifier, notifier.options.digest, lease)
            return
        while not self.stop.is_set():
            queue, due = self._queue(notifier.name, self.batch)
            for delivery in queue:
                if delivery.id not in due:
                    return  # it waits for its retry, and the later ones wait behind it
                if limiter is not None:
                    wait = limiter.wait()
                    if wait > MAX_WAIT or self.stop.wait(wait):
                        return
                    limiter.take()
                if not self.holds() or not self.store.claim(delivery.id, self.clock(), lease):
                    return  # another pass is sending it
                if not self._send(notifier, delivery):
                    return
                if self.stop.is_set():
                    return
            if not queue:
                return

    def _drain_digests(self, notifier: Notifier, period: timedelta, lease: timedelta) -> None:
        """Send one message per closed window, oldest first; its deliveries go together, and
        a window waiting for its retry holds back the later ones."""
        queue, due = self._queue(notifier.name, DIGEST_LIMIT)
        now = self.clock()
        windows: dict[datetime, list[Delivery]] = {}
        for delivery in queue:
            start = window_start(delivery.created_at, period)
            if start + period <= now:
                windows.setdefault(start, []).append(delivery)
        for start, deliveries in sorted(windows.items()):
            ids = [delivery.id for delivery in deliveries]
            if any(each not in due for each in ids):
                return
            if self.stop.is_set() or not self.holds():
                return
            if not self.store.claim(ids, self.clock(), lease):
                return
            alerts = tuple(delivery.alert for delivery in deliveries)
            digest = Digest(digest_id(alerts), start, start + period, alerts)
            try:
                note = _attempt(notifier, functools.partial(notifier.send_digest, digest))
            except DeliveryError as exc:
                if self._record_failure(deliveries, exc):
                    self.report.add(notifier.name, "retrying", len(ids))
                    return
                self.report.add(notifier.name, "dead", len(ids))
                continue
            self.store.mark_sent(ids, self.clock(), note)
            self.report.add(notifier.name, "sent", len(ids))
            log.info(
                "digest sent: notifier %s, %d alerts of %s (delivery %s)",
                notifier.name,
                len(ids),
                start.strftime("%Y-%m-%d %H:%M"),
                digest.digest_id,
            )

    def _send(self, notifier: Notifier, delivery: Delivery) -> bool:
        """Send and record one delivery; False when the notifier must wait."""
        try:
            note = _attempt(notifier, functools.partial(notifier.send, delivery.alert))
        except DeliveryError as exc:
            if self._record_failure([delivery], exc):
                self.report.add(notifier.name, "retrying")
                return False
            self.report.add(notifier.name, "dead")
            return True
        self.store.mark_sent(delivery.id, self.clock(), note)
        self.report.add(notifier.name, "sent")
        log.log(
            logging.WARNING if note else logging.INFO,
            "alert sent: rule %s, notifier %s, item %r (delivery %s)%s",
            delivery.alert.rule,
            delivery.notifier,
            one_line(delivery.alert.item.title)[:80],
            delivery.alert.delivery_id,
            f"; {note}" if note else "",
        )
        return True

    def _record_failure(self, deliveries: list[Delivery], exc: DeliveryError) -> bool:
        """Record a failed attempt (of one delivery, or of a digest's); return whether it will
        be retried, and pause the notifier until then.

        ``give_up`` counts the delivery's own failures: it is dead once it has been failing
        for ``give_up`` by its backoff schedule (``failing_for``) and was detected at least
        ``give_up`` ago. Time spent queued behind another delivery of its notifier is not
        failing, so a delivery that was never tried gets its full ``give_up`` of retries.
        """
        now = self.clock()
        delivery = deliveries[0]
        ids = [each.id for each in deliveries]
        attempts = delivery.attempts + 1
        gave_up = (
            now - delivery.created_at >= self.retry.give_up
            and failing_for(attempts, self.retry) >= self.retry.give_up
        )
        if exc.retryable and not gave_up:
            delay = backoff(attempts, self.retry)
            if exc.retry_after is not None:
                delay = max(delay, timedelta(seconds=exc.retry_after))
            retry_at = now + delay
            self.store.mark_failed(ids, exc.reason, retry_at=retry_at, now=now)
            self.paused_until = retry_at
            log.warning(
                "delivery failed: %s; retry %d at %s (rule %s, delivery %s)",
                exc,
                attempts,
                retry_at.strftime("%H:%M:%S"),
                delivery.alert.rule,
                delivery.alert.delivery_id,
            )
            return True
        self.store.mark_failed(ids, exc.reason, retry_at=None, now=now)
        why = (
            f"gave up after {self.retry.give_up} of failures"
            if exc.retryable
            else "permanent error"
        )
        log.error(
            "delivery dead (%s): %s (rule %s, delivery %s)",
            why,
            exc,
            delivery.alert.rule,
            delivery.alert.delivery_id,
        )
        return False


def window_start(moment: datetime, period: timedelta) -> datetime:
    """The start of the digest window holding a moment: windows are aligned on the epoch, so
    ``1h`` windows start on the hour and ``1d`` ones at midnight UTC."""
    seconds = period.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, UTC)


def digest_id(alerts: tuple[Alert, ...]) -> str:
    """A digest's id, the same every time the same deliveries are sent together."""
    members = ",".join(sorted(alert.delivery_id for alert in alerts))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"watcher-digest:{members}"))


def _attempt(notifier: Notifier, send: Callable[[], str | None]) -> str | None:
    """Send, turning a notifier's unexpected exception (a bug) into a retryable failure, so
    that it is logged with its traceback and the other notifiers carry on."""
    try:
        return send()
    except DeliveryError:
        raise
    except Exception as exc:
        trace = notifier.redact("".join(traceback.format_exception(exc)))
        log.error("notifier %s: unexpected error\n%s", notifier.name, trace.rstrip())
        raise DeliveryError(notifier.name, f"unexpected error: {type(exc).__name__}") from exc
