"""One cycle: poll every feed, then deliver (``watcher once``); and the pipeline the
daemon runs the same steps with, built once from a config."""

from __future__ import annotations

import contextlib
import gc
import logging
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor as Pool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from watcher.config import Config, FeedConfig, Rate
from watcher.deliver import DeliveryReport, RateLimiter, Senders, deliver_due
from watcher.errors import StateError
from watcher.fulltext import WORKERS as FULL_TEXT_WORKERS
from watcher.fulltext import ArticleOutcome, FullText, merge
from watcher.http import new_session
from watcher.lanes import poll_all
from watcher.notify import Notifier, build_notifiers
from watcher.parse import ParserPool
from watcher.poll import Poller, PollOutcome, Rules
from watcher.rules import Matcher
from watcher.state import DatabaseLock, Store, StoredMatch, Unchanged, is_postgres, open_store
from watcher.state.sqlite import copy_database
from watcher.text import plural

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    """What one config makes of polling and delivering: the feeds, the rules and the
    notifiers. A reload builds a new one and swaps it in with one assignment, so every poll
    and every drain runs with the old config or the new one, never a mix."""

    config: Config
    feeds: Mapping[str, FeedConfig]
    rules: Rules
    senders: Senders


REMOVED = "notifier removed from the config"
DISABLED = "notifier disabled (its url is empty)"


class Pipeline:
    """Everything a poll or a delivery pass needs, built once from a config."""

    def __init__(self, config: Config) -> None:
        settings = config.settings
        # each polling thread and each notifier's may hold a connection at once
        self.store = open_store(settings.database, connections=settings.concurrency + 16)
        self.session = new_session(settings.user_agent, pool_size=settings.concurrency)
        self.parsers = ParserPool()
        """Large bodies are parsed in worker processes, under a deadline; the workers start
        at the first large body, so a cycle of 304s or of small feeds starts none."""
        self.runtime = self._runtime(config, Senders({}, {}, settings.retry))
        self.poller = Poller(
            self.store,
            self.session,
            lambda: self.runtime.rules,
            parse=self.parsers.parse,
        )
        self.fulltext = FullText(
            self.store, self.session, lambda: self.runtime.rules, self.feed, self.poller.host_slot
        )
        """Pending items of full_text feeds: their article fetched, then matched."""
        self.stopping = threading.Event()
        # The config and the compiled rules live as long as the process and hold no cycles
        # to collect: keep the collector from walking them at every collection.
        gc.freeze()

    def apply(self, config: Config) -> None:
        """Run with a reloaded config from the next poll and the next drain on."""
        self.runtime = self._runtime(config, self.runtime.senders)

    def bury_orphans(self) -> None:
        """Pending deliveries of notifiers the config no longer has, or has disabled, can
        never be sent: mark them dead, so that they show as failed and no longer keep their
        items from being pruned; ``watcher retry`` requeues them once the notifier is back."""
        moment = now()
        config = self.config
        buried = [
            (REMOVED, self.store.bury_orphans(list(config.notify), REMOVED, moment)),
            (DISABLED, self.store.bury_orphans(list(self.notifiers), DISABLED, moment)),
        ]
        for reason, counts in buried:
            if counts:
                log.warning(
                    "%d pending deliveries marked dead, %s: %s; `watcher retry` queues them"
                    " again once it is back",
                    sum(counts.values()),
                    reason,
                    ", ".join(sorted(counts)),
                )

    def _runtime(self, config: Config, senders: Senders) -> Runtime:
        notifiers = build_notifiers(config, self.session)
        limiters = {
            name: _limiter(senders.limiters.get(name), notifier.rate)
            for name, notifier in notifiers.items()
            if notifier.rate is not None
        }
        return Runtime(
            config,
            {feed.name: feed for feed in config.feeds},
            Rules(Matcher(config.compiled_rules()), config.settings),
            Senders(notifiers, limiters, config.settings.retry),
        )

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def senders(self) -> Senders:
        return self.runtime.senders

    def feed(self, name: str) -> FeedConfig | None:
        """The configured feed of that name, in the config now running."""
        return self.runtime.feeds.get(name)

    @property
    def notifiers(self) -> Mapping[str, Notifier]:
        return self.runtime.senders.notifiers

    def deliver(self, owner: str | None = None) -> DeliveryReport:
        """One delivery pass, waiting for every notifier (``watcher once``). With ``owner``
        (a database shared with running daemons), only the notifiers no daemon holds."""
        senders = self.senders
        try:
            return deliver_due(
                self.store,
                senders.notifiers,
                senders.retry,
                now(),
                limiters=senders.limiters,
                stop=self.stopping,
                owner=owner,
            )
        finally:
            if owner is not None:
                self.store.release_notifiers(owner)

    def close(self) -> None:
        self.parsers.close()
        self.session.close()
        self.store.close()


@dataclass
class CycleReport:
    outcomes: list[PollOutcome] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    alerts: list[StoredMatch] | None = None
    """A dry run on SQLite: the reports that would alert, those that open a story; the
    grouping decided on the throwaway copy of the database. None: not known (PostgreSQL,
    where a dry run records nothing), and every match would alert."""

    @property
    def failed(self) -> bool:
        failed_polls = any(outcome.status == "failed" for outcome in self.outcomes)
        return failed_polls or bool(self.delivery.retrying or self.delivery.dead)


def run_once(config: Config, *, dry_run: bool = False) -> CycleReport:
    """Poll every feed once, concurrently, then make one delivery pass (unless dry-run)."""
    if dry_run:
        with _scratch(config) as scratch:
            return _cycle(scratch, dry_run=True)
    lock = DatabaseLock(config.settings.database)
    lock.acquire()
    try:
        return _cycle(config, dry_run=False)
    finally:
        lock.release()


@contextlib.contextmanager
def _scratch(config: Config) -> Iterator[Config]:
    """The config on a throwaway copy of its SQLite database, so that a dry run writes
    nothing: not even the database, when there is none yet, nor a migration. (On
    PostgreSQL a dry run records nothing but may migrate the schema.)"""
    database = config.settings.database
    if is_postgres(database):
        yield config
        return
    with tempfile.TemporaryDirectory(prefix="watcher-dry-run-") as folder:
        copy = Path(folder, "dry-run.db")
        if Path(database).exists():
            in_use = DatabaseLock(database).holder() is not None
            copy_database(Path(database), copy, in_use=in_use)
        settings = config.settings.model_copy(update={"database": str(copy)})
        yield config.model_copy(update={"settings": settings})


def _cycle(config: Config, *, dry_run: bool) -> CycleReport:
    pipeline = Pipeline(config)
    shared = is_postgres(config.settings.database)
    try:
        if not dry_run and not shared:  # the lock says no other process holds a lease
            pipeline.store.release_leases()
            pipeline.bury_orphans()
        moment = now()
        unchanged: list[Unchanged] = []
        pipeline.poller.unchanged = unchanged
        with Pool(max_workers=config.settings.concurrency) as pool:
            outcomes = poll_all(
                pool,
                config.settings.concurrency,
                config.feeds,
                lambda feed: pipeline.poller.poll(feed, moment, dry_run=dry_run).matched_only(),
            )
        outcomes = _record_unchanged(pipeline.store, unchanged, outcomes)
        if dry_run:
            outcomes = _read_in_memory(pipeline, outcomes)
        else:  # the articles of the items just stored, and of any an earlier run left pending
            outcomes = _with_articles(outcomes, pipeline.fulltext.drain())
        report = CycleReport(outcomes)
        if dry_run and not shared:
            report.alerts = _would_alert(pipeline, outcomes, moment)
        if not dry_run:
            report.delivery = pipeline.deliver(owner=f"once-{uuid.uuid4().hex}" if shared else None)
        return report
    finally:
        pipeline.close()


def _would_alert(
    pipeline: Pipeline, outcomes: list[PollOutcome], moment: datetime
) -> list[StoredMatch]:
    """The reports a dry run would alert: its matched items recorded in the throwaway copy
    of the database, whose stories decide, as in a real run, which report opens a story
    (and alerts) and which joins one."""
    matched = 0
    for outcome in outcomes:
        feed = pipeline.feed(outcome.feed)
        items = [item for item in outcome.new_items if item.matches]
        if feed is None or not items:
            continue
        matched += sum(len(item.matches) for item in items)
        pipeline.store.ingest(
            feed.name,
            feed.url,
            etag=None,
            last_modified=None,
            present=[],
            new_items=items,
            now=moment,
        )
    if not matched:
        return []
    stories = pipeline.store.stories(moment, limit=matched)
    opened = [story.reports[0] for story in stories if story.reports[0].detected_at >= moment]
    return sorted(opened, key=lambda report: (report.item.feed, report.rule))


def _record_unchanged(
    store: Store, unchanged: list[Unchanged], outcomes: list[PollOutcome]
) -> list[PollOutcome]:
    """Record the polls that brought nothing new, together; if the database refuses, they
    are failed polls (nothing is lost: the next cycle polls them again)."""
    try:
        store.record_unchanged_many(unchanged)
    except StateError as exc:
        log.error("cannot record %s in the database: %s", plural(len(unchanged), "poll"), exc)
        names = {poll.name for poll in unchanged}
        error = f"database error: {exc}"
        return [
            replace(outcome, status="failed", error=error) if outcome.feed in names else outcome
            for outcome in outcomes
        ]
    return outcomes


def _read_in_memory(pipeline: Pipeline, outcomes: list[PollOutcome]) -> list[PollOutcome]:
    """A dry run's items waiting for their article, fetched and matched without recording."""
    waiting = [
        (index, feed)
        for index, outcome in enumerate(outcomes)
        if outcome.articles and (feed := pipeline.feed(outcome.feed)) is not None
    ]
    if not waiting:
        return outcomes
    done = list(outcomes)
    with Pool(max_workers=FULL_TEXT_WORKERS) as pool:
        read = pool.map(
            lambda found: pipeline.fulltext.in_memory(found[1], outcomes[found[0]].new_items),
            waiting,
        )
        for (index, _), items in zip(waiting, read, strict=True):
            done[index] = replace(outcomes[index], new_items=tuple(items)).matched_only()
    return done


def _with_articles(
    outcomes: list[PollOutcome], articles: list[ArticleOutcome]
) -> list[PollOutcome]:
    """The polls' outcomes with their items matched on their articles, and the items an
    earlier run left pending added to their feed's outcome."""
    by_feed: dict[str, list[ArticleOutcome]] = {}
    for article in articles:
        by_feed.setdefault(article.feed, []).append(article)
    done = []
    for outcome in outcomes:
        found = by_feed.pop(outcome.feed, [])
        if found:
            keys = {item.entry.key for item in outcome.new_items}
            items = merge(found, list(outcome.new_items))
            items += [a.item for a in found if a.item.entry.key not in keys]
            outcome = replace(
                outcome,
                new_items=tuple(items),
                deliveries=outcome.deliveries + sum(a.deliveries for a in found),
            ).matched_only()
        done.append(outcome)
    return done


def _limiter(current: RateLimiter | None, rate: Rate) -> RateLimiter:
    """The notifier's limiter, kept across a reload unless its rate changed."""
    return current if current is not None and current.rate == rate else RateLimiter(rate)
