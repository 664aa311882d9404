"""The outbox worker: sends due deliveries, records each outcome, schedules retries.

A delivery is marked sent only after its notifier returned, that is after the receiver
acknowledged it; a crash in between repeats it under the same delivery id, never loses it.
Each delivery is leased while it is sent, so two passes never send it at once, and a lease
left by a pass that died runs out and the delivery is taken back.

Each notifier drains its own queue, in detection order, in a thread of its own: a notifier
that fails or hangs holds back nothing but itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from watcher.config import Rate, RetrySettings
from watcher.errors import DeliveryError
from watcher.notify.base import Notifier
from watcher.state import Delivery, Store
from watcher.text import one_line

log = logging.getLogger(__name__)

BATCH = 200
MAX_WAIT = 5.0
"""Longest a pass sleeps for a rate limit before it leaves the rest to the next pass."""
LEASE_MARGIN = timedelta(seconds=30)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, sent: int = 0, retrying: int = 0, dead: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.retrying += retrying
            self.dead += dead


class RateLimiter:
    """A token bucket: at most ``rate.count`` sends per ``rate.period``, in bursts of up to
    ``count``. One per notifier, kept from pass to pass."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
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


def deliver_due(
    store: Store,
    notifiers: Mapping[str, Notifier],
    retry: RetrySettings,
    now: datetime,
    *,
    limiters: Mapping[str, RateLimiter] | None = None,
    stop: threading.Event | None = None,
    batch: int = BATCH,
) -> DeliveryReport:
    """Send every due delivery, each notifier's in its own thread, in detection order.

    ``now`` is the time of the pass (tests set it); it advances with the clock while the
    pass runs.
    """
    report = DeliveryReport()
    started = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    pending = store.notifiers_due(now, notifiers)
    if not pending:
        return report
    drain = _Drain(store, retry, clock, report, stop or threading.Event(), batch)
    with ThreadPoolExecutor(max_workers=len(pending), thread_name_prefix="deliver") as pool:
        for name in pending:
            limiter = (limiters or {}).get(name)
            pool.submit(drain, notifiers[name], limiter)
    return report


@dataclass
class _Drain:
    """Sends one notifier's due deliveries until none is left, one fails and must wait, the
    rate limit asks for a long pause, or the daemon stops."""

    store: Store
    retry: RetrySettings
    clock: Callable[[], datetime]
    report: DeliveryReport
    stop: threading.Event
    batch: int

    def __call__(self, notifier: Notifier, limiter: RateLimiter | None) -> None:
        try:
            self._drain(notifier, limiter)
        except Exception:  # a bug must not kill the pass silently: log it, keep the outbox
            log.exception("notifier %s: delivery pass failed", notifier.name)

    def _drain(self, notifier: Notifier, limiter: RateLimiter | None) -> None:
        lease = timedelta(seconds=notifier.timeout * 2) + LEASE_MARGIN
        while not self.stop.is_set():
            due = self.store.due_deliveries(self.clock(), [notifier.name], self.batch)
            for delivery in due:
                if limiter is not None:
                    wait = limiter.wait()
                    if wait > MAX_WAIT or self.stop.wait(wait):
                        return
                    limiter.take()
                if not self.store.claim(delivery.id, self.clock(), lease):
                    continue  # another pass has it
                if not self._send(notifier, delivery):
                    return
                if self.stop.is_set():
                    return
            if len(due) < self.batch:
                return

    def _send(self, notifier: Notifier, delivery: Delivery) -> bool:
        """Send and record one delivery; False when the notifier must wait."""
        try:
            note = _attempt(notifier, delivery)
        except DeliveryError as exc:
            if self._record_failure(delivery, exc):
                self.report.add(retrying=1)
                return False
            self.report.add(dead=1)
            return True
        self.store.mark_sent(delivery.id, self.clock(), note)
        self.report.add(sent=1)
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

    def _record_failure(self, delivery: Delivery, exc: DeliveryError) -> bool:
        """Record a failed attempt; return whether it will be retried."""
        now = self.clock()
        attempts = delivery.attempts + 1
        gave_up = now - delivery.created_at >= self.retry.give_up
        if exc.retryable and not gave_up:
            delay = backoff(attempts, self.retry)
            if exc.retry_after is not None:
                delay = max(delay, timedelta(seconds=exc.retry_after))
            retry_at = now + delay
            self.store.mark_failed(delivery.id, exc.reason, retry_at=retry_at, now=now)
            log.warning(
                "delivery failed: %s; retry %d at %s (rule %s, delivery %s)",
                exc,
                attempts,
                retry_at.strftime("%H:%M:%S"),
                delivery.alert.rule,
                delivery.alert.delivery_id,
            )
            return True
        self.store.mark_failed(delivery.id, exc.reason, retry_at=None, now=now)
        why = f"gave up after {self.retry.give_up}" if exc.retryable else "permanent error"
        log.error(
            "delivery dead (%s): %s (rule %s, delivery %s)",
            why,
            exc,
            delivery.alert.rule,
            delivery.alert.delivery_id,
        )
        return False


def _attempt(notifier: Notifier, delivery: Delivery) -> str | None:
    """Send, turning a notifier's unexpected exception (a bug) into a retryable failure, so
    that it is logged with its traceback and the other notifiers carry on."""
    try:
        return notifier.send(delivery.alert)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("notifier %s: unexpected error", notifier.name)
        raise DeliveryError(notifier.name, f"unexpected error: {type(exc).__name__}") from exc
