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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from watcher.config import Config, FeedConfig, load
from watcher.cycle import Pipeline, now
from watcher.deliver import Outbox
from watcher.errors import ConfigError, StateError
from watcher.health import HealthServer
from watcher.metrics import Metrics
from watcher.state import DatabaseLock

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = timedelta(seconds=10)
"""How often the outbox is checked for retries that came due; new alerts wake it at once."""
DELIVERY_JOB = "deliver"
CONFIG_JOB = "config"
RETENTION_DELAY = timedelta(hours=1)
"""The first pruning waits this long after start: a restart loop does not prune in a loop."""
CONFIG_CHECK = timedelta(seconds=2)
"""How often the config file is checked for changes."""
STOP_MARGIN = 5.0
"""Seconds a stop waits for sends in flight beyond their deadline (it should never be
needed; an Apprise send has no deadline of ours)."""


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


def _needs_restart(old: Config, new: Config) -> list[str]:
    """Settings a reload cannot apply to a running daemon."""
    keys = ("database", "listen", "concurrency", "log_format")
    return [
        f"settings.{key}"
        for key in keys
        if getattr(old.settings, key) != getattr(new.settings, key)
    ]


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
        self.metrics = Metrics(self.pipeline.store)
        self.outbox = Outbox(
            self.pipeline.store,
            lambda: self.pipeline.senders,
            stop=self.stopping,
            clock=now,
            on_report=self.metrics.observe_delivery,
        )
        self._reloading = threading.Lock()
        self._config_mtime = _mtime(config.source)
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
            spread = self.config.feed_interval(feed) * index / len(feeds)  # no thundering herd
            self._schedule(feed, start + spread)
        self.scheduler.add_job(
            self._prune,
            "interval",
            id="retention",
            name="retention",
            days=1,
            next_run_time=start + RETENTION_DELAY,
        )
        self.scheduler.add_job(
            self._watch_config,
            "interval",
            id=CONFIG_JOB,
            name="watch the config file",
            seconds=CONFIG_CHECK.total_seconds(),
        )
        self.scheduler.add_job(
            self._deliver,
            "interval",
            id=DELIVERY_JOB,
            name="deliver",
            seconds=DELIVERY_INTERVAL.total_seconds(),
            next_run_time=start,
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
        """Stop scheduling and wait for the polls and sends in flight; each ends by its
        deadline, and whatever is not sent stays pending in the outbox."""
        log.info("stopping: waiting for polls and deliveries in flight")
        self.stopping.set()
        if self.health is not None:
            self.health.stop()
        self.scheduler.shutdown(wait=True)
        timeouts = [notifier.timeout for notifier in self.pipeline.notifiers.values()]
        left = self.outbox.close(max(timeouts, default=0.0) + STOP_MARGIN)
        if left:
            log.warning(
                "stopping: %s still sending past the deadline; left pending, sent again at "
                "the next start",
                ", ".join(left),
            )
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
        self.scheduler.add_job(self.reload, id="reload", replace_existing=True)

    def _schedule(self, feed: FeedConfig, first: datetime) -> None:
        self.scheduler.add_job(
            self._poll,
            "interval",
            args=[feed],
            id=f"poll:{feed.name}",
            name=f"poll {feed.name}",
            seconds=self.config.feed_interval(feed).total_seconds(),
            next_run_time=first,
            replace_existing=True,
        )

    def _prune(self) -> None:
        before = now() - self.config.settings.retention
        pruned = self.pipeline.store.prune(before)
        if pruned:
            log.info(
                "retention: %d items gone from their feeds since %s pruned", pruned, before.date()
            )

    def _watch_config(self) -> None:
        try:
            changed = Path(self.config.source).stat().st_mtime != self._config_mtime
        except OSError:
            return  # being replaced (editors write a new file, then rename it)
        if changed:
            self.reload()

    def reload(self) -> None:
        """Read the config again and apply it; an invalid one is reported and ignored.

        Rules and notifiers are swapped in one assignment each, between polls; feeds added
        are scheduled at once (their first poll is a baseline), removed ones unscheduled,
        changed ones rescheduled. Nothing in the outbox is touched.
        """
        with self._reloading:
            path = Path(self.config.source)
            try:
                self._config_mtime = path.stat().st_mtime
                config = load(path)
            except ConfigError as exc:
                log.error(
                    "config reload refused, the running config stays: %s",
                    "; ".join(exc.problems),
                )
                return
            for problem in _needs_restart(self.config, config):
                log.warning("config reload: %s changed; restart watcher to apply it", problem)
            old = {feed.name: feed for feed in self.config.feeds}
            new = {feed.name: feed for feed in config.feeds}
            self.config = config
            self.pipeline.apply(config)
            for name in old.keys() - new.keys():
                self.scheduler.remove_job(f"poll:{name}")
            for name, feed in new.items():
                if old.get(name) != feed:
                    self._schedule(feed, now() if name not in old else self._next_run(name))
            log.info(
                "config reloaded: %d feeds (%d added, %d removed), %d rules, %d notifiers",
                len(new),
                len(new.keys() - old.keys()),
                len(old.keys() - new.keys()),
                len(config.rules),
                len(self.pipeline.notifiers),
            )

    def _next_run(self, name: str) -> datetime:
        job = self.scheduler.get_job(f"poll:{name}")
        return job.next_run_time if job is not None and job.next_run_time else now()

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
        """Start sending now: new alerts leave at once, each notifier in its own thread,
        and a notifier still busy looks again when it is done."""
        self.outbox.wake()

    def _deliver(self) -> None:
        self.outbox.wake()
