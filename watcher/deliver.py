"""The outbox worker: sends due deliveries, records each outcome, schedules retries.

A delivery is marked sent only after its notifier returned, that is after the receiver
acknowledged it; a crash in between repeats it under the same delivery id, never loses it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.config import RetrySettings
from watcher.errors import DeliveryError
from watcher.notify.base import Notifier
from watcher.state import Delivery, Store
from watcher.text import one_line

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0


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
    batch: int = 200,
) -> DeliveryReport:
    """Send every due delivery, in batches. Per notifier they leave in detection order; a
    notifier that fails with a retryable error is left alone for the rest of the pass, so
    that its later deliveries do not overtake the failed one."""
    report = DeliveryReport()
    active = set(notifiers)
    while active:
        due = store.due_deliveries(now, sorted(active), batch)
        for delivery in due:
            if delivery.notifier not in active:
                continue
            notifier = notifiers[delivery.notifier]
            if not _deliver_one(store, notifier, delivery, retry, now, report):
                active.discard(delivery.notifier)
        if len(due) < batch:
            break
    return report


def _deliver_one(
    store: Store,
    notifier: Notifier,
    delivery: Delivery,
    retry: RetrySettings,
    now: datetime,
    report: DeliveryReport,
) -> bool:
    """Send one delivery and record the outcome; False when its notifier must wait."""
    try:
        _send(notifier, delivery)
    except DeliveryError as exc:
        if _record_failure(store, delivery, exc, retry, now):
            report.retrying += 1
            return False
        report.dead += 1
        return True
    store.mark_sent(delivery.id, now)
    report.sent += 1
    log.info(
        "alert sent: rule %s, notifier %s, item %r (delivery %s)",
        delivery.alert.rule,
        delivery.notifier,
        one_line(delivery.alert.item.title)[:80],
        delivery.alert.delivery_id,
    )
    return True


def _send(notifier: Notifier, delivery: Delivery) -> None:
    """Send, turning a notifier's unexpected exception (a bug) into a retryable failure, so
    that it is logged with its traceback and the other notifiers carry on."""
    try:
        notifier.send(delivery.alert)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("notifier %s: unexpected error", notifier.name)
        raise DeliveryError(notifier.name, f"unexpected error: {type(exc).__name__}") from exc


def _record_failure(
    store: Store, delivery: Delivery, exc: DeliveryError, retry: RetrySettings, now: datetime
) -> bool:
    """Record a failed attempt; return whether it will be retried."""
    attempts = delivery.attempts + 1
    gave_up = now - delivery.created_at >= retry.give_up
    if exc.retryable and not gave_up:
        retry_at = now + backoff(attempts, retry)
        store.mark_failed(delivery.id, exc.reason, retry_at=retry_at, now=now)
        log.warning(
            "delivery failed: %s; retry %d at %s (rule %s, delivery %s)",
            exc,
            attempts,
            retry_at.strftime("%H:%M:%S"),
            delivery.alert.rule,
            delivery.alert.delivery_id,
        )
        return True
    store.mark_failed(delivery.id, exc.reason, retry_at=None, now=now)
    why = "gave up after " + str(retry.give_up) if gave_up and exc.retryable else "permanent error"
    log.error(
        "delivery dead (%s): %s (rule %s, delivery %s)",
        why,
        exc,
        delivery.alert.rule,
        delivery.alert.delivery_id,
    )
    return False
