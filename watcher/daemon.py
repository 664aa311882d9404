"""The long-running daemon.

Feeds are polled by the FeedScheduler (schedule.py), which claims due feeds from the
database, so that several processes can share one PostgreSQL. APScheduler 3 cannot share a
job store between processes; it runs the periodic control jobs only (wake the outbox, beat
the heart, prune, watch the config file), on an executor of their own, so hung polls can
never starve them. Its defaults do not suit such ticks: ``misfire_grace_time`` of 1 s
silently skips a run that started late, so it is None with ``coalesce``.

Signal handlers only set events; the main thread acts on them.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import uuid
from collections.abc import Mapping
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

from watcher.config import Config, load
from watcher.cycle import Pipeline, now
from watcher.deliver import Outbox
from watcher.errors import ConfigError, StateError
from watcher.fulltext import ArticleOutcome
from watcher.metrics import Metrics
from watcher.schedule import FeedScheduler, Trouble
from watcher.state import DatabaseLock, FeedState, Process, ScheduledFeed, is_postgres
from watcher.text import plural
from watcher.web import Site, WebApp, WebServer, is_loopback
from watcher.web.access import Access

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = timedelta(seconds=10)
"""How often the outbox is checked for retries that came due; new alerts wake it at once."""
DELIVERY_JOB = "deliver"
CONFIG_JOB = "config"
RETENTION_DELAY = timedelta(hours=1)
"""The first pruning waits this long after start: a restart loop does not prune in a loop."""
CONFIG_CHECK = timedelta(seconds=2)
"""How often the config file is checked for changes."""
UNKNOWN_FEED_WAIT = timedelta(minutes=1)
"""A feed claimed but not in this process's config is due again this much later (another
process, whose config has it, polls it meanwhile)."""
HEARTBEAT = timedelta(seconds=10)
"""How often a process tells the database it is alive (``watcher status`` lists it)."""
CONTROL_THREADS = 4
STOP_MARGIN = 5.0
"""Seconds a stop waits for sends in flight beyond their deadline (it should never be
needed; an Apprise send has no deadline of ours)."""


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(config: Config) -> Fingerprint | None:
    """The config file's and its templates' modification times and sizes; None while one
    cannot be read (an editor replacing the file)."""
    paths = [config.source]
    paths += [t for options in config.notify.values() if (t := getattr(options, "template", None))]
    try:
        stats = [(path, Path(path).stat()) for path in paths]
    except OSError:
        return None
    return tuple((path, stat.st_mtime_ns, stat.st_size) for path, stat in stats)


def feed_lease(config: Config) -> timedelta:
    """How long a claimed feed is this process's: a poll (fetch and parse, each under the
    timeout) ends well before; a process that died gives its feeds up this soon."""
    return config.settings.timeout * 2 + timedelta(seconds=10)


def scheduled_feeds(config: Config) -> list[ScheduledFeed]:
    """The config's feeds for the schedule; feeds new to the database are first due spread
    over their interval, so that a start or a reload brings no thundering herd."""
    start = now()
    feeds = config.feeds
    return [
        ScheduledFeed(
            feed.name,
            feed.url,
            config.feed_interval(feed),
            start + config.feed_interval(feed) * index / len(feeds),
        )
        for index, feed in enumerate(feeds)
    ]


def first_polls(config: Config, states: Mapping[str, FeedState], start: datetime) -> str:
    """When the feeds are first polled, for the start's log: feeds new to the database are
    spread over their interval, and a daemon waiting for them must not look idle."""
    due, later = 0, []
    for feed in config.feeds:
        state = states.get(feed.name)
        if state is None or state.gone:
            continue
        if state.next_poll is None or state.next_poll <= start:
            due += 1
        else:
            later.append(state.next_poll)
    if not later:
        return f"first polls: {plural(due, 'feed')} due now"
    return (
        f"first polls: {plural(due, 'feed')} due now, {len(later)} spread over the next "
        f"{_span(max(later) - start)}"
    )


def _span(delta: timedelta) -> str:
    seconds = math.ceil(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{math.ceil(seconds / 60)}min"
    return f"{math.ceil(seconds / 3600)}h"


def _needs_restart(old: Config, new: Config) -> list[str]:
    """Settings a reload cannot apply to a running daemon."""
    keys = ("database", "listen", "concurrency", "log_format")
    return [
        f"settings.{key}"
        for key in keys
        if getattr(old.settings, key) != getattr(new.settings, key)
    ]


class Daemon:
    """``watcher run``: polls feeds as the database schedules them, delivers, reloads, until
    a signal."""

    def __init__(self, config: Config) -> None:
        self.lock = DatabaseLock(config.settings.database)
        self.lock.acquire()
        self.pipeline = Pipeline(config)
        started = now()
        self.process = Process(
            uuid.uuid4().hex, socket.gethostname(), os.getpid(), started, started
        )
        self.shared = is_postgres(config.settings.database)
        if not self.shared:  # the lock says no other process can hold a lease
            released = self.pipeline.store.release_leases()
            if released:
                log.warning(
                    "%d deliveries were being sent when watcher last stopped: sent again",
                    released,
                )
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(CONTROL_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.stopping = self.pipeline.stopping
        parsers = self.pipeline.parsers
        self.metrics = Metrics(self.pipeline.store, lambda: parsers.restarts)
        self.outbox = Outbox(
            self.pipeline.store,
            lambda: self.pipeline.senders,
            stop=self.stopping,
            clock=now,
            on_report=self.metrics.observe_delivery,
            owner=self.process.id if self.shared else None,
        )
        self.feeds = FeedScheduler(
            self.pipeline.store,
            self.process.id,
            self._poll,
            concurrency=config.settings.concurrency,
            lease=feed_lease(config),
            clock=now,
            stopping=self.stopping,
        )
        self.pipeline.fulltext.on_outcome = self._on_article
        lease = feed_lease(config)
        self.pipeline.poller.renew = lambda name: self.pipeline.store.renew_feed(
            self.process.id, name, now() + lease
        )
        self.delivery_trouble = Trouble("delivery")
        self._reload_requested = threading.Event()
        self._signal: int | None = None
        self._reloading = threading.Lock()
        self._applied = fingerprint(config)
        self._pending: Fingerprint | None = None
        self.scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        listen = config.settings.listen
        self.web: WebServer | None = None
        if listen:
            site = Site(
                self.pipeline.store, lambda: self.pipeline.config, self.check, self.metrics.text
            )
            self.app = WebApp(site, loopback=is_loopback(listen))
            try:
                self.web = WebServer(listen, self.app)
            except OSError as exc:
                self.pipeline.close()
                self.lock.release()
                raise StateError(
                    f"cannot listen on {listen}: {exc.strerror} (change settings.listen, "
                    "or set it to null)"
                ) from exc

    @property
    def config(self) -> Config:
        """The config running now (the pipeline's snapshot)."""
        return self.pipeline.config

    def start(self) -> None:
        start = now()
        store = self.pipeline.store
        store.heartbeat(self.process)
        store.sync_feeds(scheduled_feeds(self.config), start, retire=not self.shared)
        if not self.shared:  # processes sharing a database may run different configs a while
            self.pipeline.bury_orphans()
        schedule = first_polls(self.config, store.feed_states(), now())  # before any is polled
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
        self.scheduler.add_job(
            self._heartbeat,
            "interval",
            id="heartbeat",
            name="heartbeat",
            seconds=HEARTBEAT.total_seconds(),
        )
        self.scheduler.start()
        self.feeds.start()
        self.pipeline.fulltext.start()  # and takes up the items a stop or crash left pending
        if self.web is not None:
            self.web.start()
            self._tell_web(self.web.address)
        for warning in self.config.warnings():
            log.warning("%s", warning)
        log.info(
            "watcher started: %s, %s, %s, database %s%s",
            plural(len(self.config.feeds), "feed"),
            plural(len(self.config.rules), "rule"),
            plural(len(self.pipeline.notifiers), "notifier"),
            store.description,
            f" (process {self.process.host}:{self.process.pid})" if self.shared else "",
        )
        log.info("%s", schedule)

    def _tell_web(self, address: str) -> None:
        """Where the pages are, and who may see them (a password is never logged)."""
        access = self.app.access
        if access is Access.OFF:
            log.warning(
                "web pages off: %s is not a loopback address and settings.web_auth is not set;"
                " only /healthz and /metrics answer",
                address,
            )
            pages = ""
        else:
            asked = " (user and password of settings.web_auth)" if access is Access.PASSWORD else ""
            pages = f"web pages on http://{address}/{asked}; "
        log.info("%shealth and metrics on http://%s/healthz and /metrics", pages, address)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly; SIGHUP reloads the config."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)
        self.start()
        while not self.stopping.wait(0.2):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                log.info("received SIGHUP: reloading the config")
                self.reload()
        if self._signal is not None:
            log.info("received %s", signal.Signals(self._signal).name)
        self.stop()

    def stop(self) -> None:
        """Stop claiming and wait for the polls and sends in flight; each ends by its
        deadline, and whatever is not sent stays pending in the outbox."""
        log.info("stopping: waiting for polls and deliveries in flight")
        self.stopping.set()
        if self.web is not None:
            self.web.stop()
        self.scheduler.shutdown(wait=True)
        self.feeds.stop()
        self.pipeline.fulltext.stop()
        timeouts = [notifier.timeout for notifier in self.pipeline.notifiers.values()]
        left = self.outbox.close(max(timeouts, default=0.0) + STOP_MARGIN)
        if left:
            log.warning(
                "stopping: %s still sending past the deadline; left pending, sent again at "
                "the next start",
                ", ".join(left),
            )
        try:
            self.pipeline.store.forget_process(self.process.id)
        except StateError as exc:
            log.warning("stopping: leases not given back (they run out by themselves): %s", exc)
        self.pipeline.close()
        self.lock.release()
        log.info("stopped")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set() and signum == signal.SIGINT:
            os.write(2, b"second SIGINT: exiting at once; unsent alerts stay pending\n")
            os._exit(1)
        self._signal = signum
        self.stopping.set()

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested.set()

    def _prune(self) -> None:
        before = now() - self.config.settings.retention
        pruned = self.pipeline.store.prune(before)
        if pruned:
            log.info(
                "retention: %d items gone from their feeds since %s pruned", pruned, before.date()
            )

    def _watch_config(self) -> None:
        """Reload once the config file (or a template) changed and then stayed the same for
        one more check: a file caught in the middle of being written is never applied."""
        seen = fingerprint(self.config)
        if seen is None or seen == self._applied:
            self._pending = None
            return
        if seen != self._pending:
            self._pending = seen
            return
        self._pending = None
        self.reload()

    def reload(self) -> None:
        """Read the config again and apply it; an invalid one is reported and ignored.

        Rules, notifiers and settings are swapped in one snapshot, between polls; feeds
        added are first due spread over their interval (their first poll is a baseline),
        removed ones are no longer claimed. Nothing in the outbox is touched.
        """
        with self._reloading:
            path = Path(self.config.source)
            self._applied = fingerprint(self.config)
            try:
                config = load(path)
            except ConfigError as exc:
                log.error(
                    "config reload refused, the running config stays: %s",
                    "; ".join(exc.problems),
                )
                return
            for problem in _needs_restart(self.config, config):
                log.warning("config reload: %s changed; restart watcher to apply it", problem)
            old = {feed.name for feed in self.config.feeds}
            new = {feed.name for feed in config.feeds}
            self._applied = fingerprint(config)
            self.pipeline.apply(config)
            try:
                self.pipeline.store.sync_feeds(
                    scheduled_feeds(config), now(), retire=not self.shared
                )
                if not self.shared:
                    self.pipeline.bury_orphans()
            except StateError as exc:
                log.error("config reload: the database could not be brought up to date: %s", exc)
            self.feeds.wake()
            log.info(
                "config reloaded: %d feeds (%d added, %d removed), %d rules, %d notifiers",
                len(new),
                len(new - old),
                len(old - new),
                len(config.rules),
                len(self.pipeline.notifiers),
            )

    def check(self) -> str | None:
        """What makes the daemon unhealthy, or None: for ``/healthz``."""
        running = self.scheduler.running and self.feeds.running and self.pipeline.fulltext.running
        if not running or self.stopping.is_set():
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

    def _poll(self, name: str) -> None:
        feed = self.pipeline.feed(name)
        if feed is None:  # not in this process's config (a reload, or another's feed)
            later = now() + UNKNOWN_FEED_WAIT
            self.pipeline.store.release_feeds(self.process.id, [name], until=later)
            return
        outcome = self.pipeline.poller.poll(feed, now())
        self.metrics.observe_poll(outcome)
        if outcome.articles:
            self.pipeline.fulltext.wake()
        if outcome.deliveries and not self.stopping.is_set():
            self.wake_delivery()

    def _on_article(self, outcome: ArticleOutcome) -> None:
        """An item matched on its article: its matches counted, its alerts sent now."""
        for match in outcome.item.matches:
            self.metrics.matches.labels(match.rule).inc()
        if outcome.deliveries and not self.stopping.is_set():
            self.wake_delivery()

    def wake_delivery(self) -> None:
        """Start sending now: new alerts leave at once, each notifier in its own thread,
        and a notifier still busy looks again when it is done."""
        try:
            self.outbox.wake()
            self.delivery_trouble.succeeded()
        except StateError as exc:
            self.delivery_trouble.failed(exc)

    def _deliver(self) -> None:
        self.wake_delivery()

    def _heartbeat(self) -> None:
        beat = Process(
            self.process.id,
            self.process.host,
            self.process.pid,
            self.process.started_at,
            now(),
        )
        try:
            self.pipeline.store.heartbeat(beat)
        except StateError:
            pass  # the scheduler and the outbox tell of database trouble, once a minute
