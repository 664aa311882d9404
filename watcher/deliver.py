"""The outbox worker: sends due deliveries, records each outcome, schedules retries.

A delivery is marked sent only after its notifier returned, that is after the receiver
acknowledged it; a crash in between repeats it under the same delivery id, never loses it.
Each delivery is leased while it is sent, so two passes never send it at once, and a lease
left by a pass that died runs out and the delivery is taken back.

Each notifier drains its own queue, in detection order, in a thread of its own: a notifier
that fails or hangs holds back nothing but itself.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
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


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    by_notifier: dict[tuple[str, str], int] = field(default_factory=dict)
    """(notifier, "sent" | "retrying" | "dead") -> deliveries, for the metrics."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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
        if notifier.options.digest:
            self._drain_digests(notifier, notifier.options.digest, lease)
            return
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

    def _drain_digests(self, notifier: Notifier, period: timedelta, lease: timedelta) -> None:
        """Send one message per closed window, oldest first; its deliveries go together."""
        now = self.clock()
        windows: dict[datetime, list[Delivery]] = {}
        for delivery in self.store.due_deliveries(now, [notifier.name], DIGEST_LIMIT):
            start = window_start(delivery.created_at, period)
            if start + period <= now:
                windows.setdefault(start, []).append(delivery)
        for start, deliveries in sorted(windows.items()):
            ids = [delivery.id for delivery in deliveries]
            if self.stop.is_set() or not self.store.claim(ids, self.clock(), lease):
                continue
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
        be retried."""
        now = self.clock()
        delivery = deliveries[0]
        ids = [each.id for each in deliveries]
        attempts = delivery.attempts + 1
        gave_up = now - delivery.created_at >= self.retry.give_up
        if exc.retryable and not gave_up:
            delay = backoff(attempts, self.retry)
            if exc.retry_after is not None:
                delay = max(delay, timedelta(seconds=exc.retry_after))
            retry_at = now + delay
            self.store.mark_failed(ids, exc.reason, retry_at=retry_at, now=now)
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
        why = f"gave up after {self.retry.give_up}" if exc.retryable else "permanent error"
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
        log.exception("notifier %s: unexpected error", notifier.name)
        raise DeliveryError(notifier.name, f"unexpected error: {type(exc).__name__}") from exc
