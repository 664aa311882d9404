"""The long-running daemon (APScheduler 3).

APScheduler's defaults do not suit pollers: ``misfire_grace_time`` of 1 s silently skips a
run that started late, so it is None (run however late) with ``coalesce`` (late runs merge
into one). ``max_instances=1`` keeps a feed from being polled twice at once; since a hung
fetch would then block its feed forever, every fetch has a hard deadline (fetch.py).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import UTC, timedelta
from types import FrameType

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from watcher.config import Config, FeedConfig
from watcher.cycle import Pipeline, now
from watcher.errors import StateError
from watcher.health import HealthServer
from watcher.metrics import Metrics
from watcher.state import DatabaseLock

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = timedelta(seconds=10)
"""How often the outbox is checked for retries that came due; new alerts wake it at once."""
DELIVERY_JOB = "deliver"


class Daemon:
    """``watcher run``: one interval job per feed and a delivery job, until a signal."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = DatabaseLock(config.settings.database)
        self.lock.acquire()
        self.pipeline = Pipeline(config)
        released = self.pipeline.store.release_leases()
        if released:
            log.warning(
                "%d deliveries were being sent when watcher last stopped: sent again", released
            )
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(config.settings.concurrency + 1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.stopping = self.pipeline.stopping
        self._delivering = threading.Lock()
        self._deliver_again = threading.Event()
        self.metrics = Metrics(self.pipeline.store)
        self.scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        listen = config.settings.listen
        self.health = None
        if listen:
            try:
                self.health = HealthServer(listen, self.check, self.metrics.text)
            except OSError as exc:
                self.pipeline.close()
                self.lock.release()
                raise StateError(
                    f"cannot listen on {listen}: {exc.strerror} (change settings.listen, "
                    "or set it to null)"
                ) from exc

    def start(self) -> None:
        start = now()
        feeds = self.config.feeds
        for index, feed in enumerate(feeds):
            interval = self.config.feed_interval(feed)
            spread = interval * index / len(feeds)  # first polls spread: no thundering herd
            self.scheduler.add_job(
                self._poll,
                "interval",
                args=[feed],
                id=f"poll:{feed.name}",
                name=f"poll {feed.name}",
                seconds=interval.total_seconds(),
                next_run_time=start + spread,
            )
        self.scheduler.add_job(
            self._deliver,
            "interval",
            id=DELIVERY_JOB,
            name="deliver",
            seconds=DELIVERY_INTERVAL.total_seconds(),
            next_run_time=start,
            max_instances=2,
        )
        self.scheduler.start()
        if self.health is not None:
            self.health.start()
            log.info("health and metrics on http://%s/healthz and /metrics", self.health.address)
        for warning in self.config.warnings():
            log.warning("%s", warning)
        log.info(
            "watcher started: %d feeds, %d rules, %d notifiers, database %s",
            len(feeds),
            len(self.config.rules),
            len(self.pipeline.notifiers),
            self.config.settings.database,
        )

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)
        self.start()
        self.stopping.wait()
        self.stop()

    def stop(self) -> None:
        """Stop scheduling and wait for the polls and deliveries in flight; each has a
        deadline, and whatever is not sent stays pending in the outbox."""
        log.info("stopping: waiting for polls and deliveries in flight")
        if self.health is not None:
            self.health.stop()
        self.scheduler.shutdown(wait=True)
        self.pipeline.close()
        self.lock.release()
        log.info("stopped")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set() and signum == signal.SIGINT:
            log.warning("second SIGINT: exiting at once; unsent alerts stay pending")
            os._exit(1)
        log.info("received %s", signal.Signals(signum).name)
        self.stopping.set()

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        log.warning("SIGHUP: reloading is not supported yet; restart watcher to apply changes")

    def check(self) -> str | None:
        """What makes the daemon unhealthy, or None: for ``/healthz``."""
        if not self.scheduler.running or self.stopping.is_set():
            return "the scheduler is not running"
        return self.pipeline.store.writable()

    def _on_scheduler_event(self, event: JobExecutionEvent) -> None:
        kind = {
            EVENT_JOB_ERROR: "error",
            EVENT_JOB_MISSED: "missed",
            EVENT_JOB_MAX_INSTANCES: "max_instances",
        }.get(event.code, "other")
        self.metrics.scheduler.labels(kind).inc()
        if kind == "error":
            log.error("job %s failed: %r", event.job_id, event.exception)
        else:
            log.warning("job %s: run %s", event.job_id, kind.replace("_", " "))

    def _poll(self, feed: FeedConfig) -> None:
        outcome = self.pipeline.poller.poll(feed, now())
        self.metrics.observe_poll(outcome)
        if outcome.deliveries and not self.stopping.is_set():
            self.wake_delivery()

    def wake_delivery(self) -> None:
        """Run a delivery pass now, or right after the one running, so alerts leave at once."""
        self._deliver_again.set()
        try:
            self.scheduler.modify_job(DELIVERY_JOB, next_run_time=now())
        except Exception:  # the scheduler is shutting down
            log.debug("delivery wake-up skipped", exc_info=True)

    def _deliver(self) -> None:
        while not self.stopping.is_set():
            if not self._delivering.acquire(blocking=False):
                return  # the pass running now sees the wake-up flag when it ends
            try:
                self._deliver_again.clear()
                self.metrics.observe_delivery(self.pipeline.deliver())
            finally:
                self._delivering.release()
            if not self._deliver_again.is_set():
                return
