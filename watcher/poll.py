"""One poll of one feed: fetch -> parse -> which entries are new -> match -> ingest."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime

import requests

from watcher.config import FeedConfig, Settings
from watcher.errors import FetchError
from watcher.fetch import fetch
from watcher.models import Entry
from watcher.parse import parse_feed
from watcher.rules import Match, Matcher
from watcher.state import NewItem, Store
from watcher.text import one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    feed: str
    status: str
    """``new`` (a 200 was processed), ``not_modified`` (304) or ``failed``."""
    new_items: tuple[NewItem, ...] = ()
    baseline: bool = False
    deliveries: int = 0
    error: str | None = None
    failures: int = 0

    @property
    def matches(self) -> int:
        return sum(len(item.matches) for item in self.new_items)


@dataclass
class Poller:
    """What a poll needs, shared by every feed's job."""

    store: Store
    session: requests.Session
    matcher: Matcher
    settings: Settings
    reported_problems: set[str] = field(default_factory=set)

    def poll(self, feed: FeedConfig, now: datetime, *, dry_run: bool = False) -> PollOutcome:
        """Poll a feed. Failures are returned (and recorded unless dry-run), never raised.

        A database failure (a full disk) rolls the poll back: its items stay unseen, so the
        next poll finds them again and no alert is lost.
        """
        try:
            return self._poll(feed, now, dry_run=dry_run)
        except sqlite3.Error as exc:
            log.error("poll failed: feed %s: cannot record it in the database: %s", feed.name, exc)
            return PollOutcome(feed.name, "failed", error=f"database error: {exc}")

    def _poll(self, feed: FeedConfig, now: datetime, *, dry_run: bool) -> PollOutcome:
        state = self.store.feed_state(feed.name)
        try:
            result = fetch(
                self.session,
                feed.name,
                feed.url,
                etag=state.etag,
                last_modified=state.last_modified,
                timeout=self.settings.timeout.total_seconds(),
                max_size=self.settings.max_feed_size,
                headers=feed.headers,
            )
            if result.not_modified:
                if not dry_run:
                    self.store.record_not_modified(feed.name, feed.url, now)
                    _log_recovery(feed.name, state.failures)
                return PollOutcome(feed.name, "not_modified")
            parsed = parse_feed(feed.name, result.body, result.headers, result.url)
        except FetchError as exc:
            return self._failed(feed, exc, now, dry_run=dry_run, previous=state.failures)

        if parsed.problem and feed.name not in self.reported_problems:
            self.reported_problems.add(feed.name)
            log.warning("feed %s: parsed with errors, items used: %s", feed.name, parsed.problem)
        keys = [entry.key for entry in parsed.entries]
        unseen = self.store.unseen(feed.name, keys)
        baseline = not state.baseline_done and not feed.backfill
        cutoff = now - self.settings.max_item_age
        new_items = tuple(
            NewItem(
                entry,
                () if baseline or _too_old(entry.published, cutoff) else self._match(entry, feed),
            )
            for entry in parsed.entries
            if entry.key in unseen
        )
        outcome = PollOutcome(feed.name, "new", new_items, baseline=baseline)
        if dry_run:
            return outcome
        deliveries = self.store.ingest(
            feed.name,
            feed.url,
            etag=result.etag,
            last_modified=result.last_modified,
            present=keys,
            new_items=new_items,
            now=now,
        )
        _log_recovery(feed.name, state.failures)
        _log_outcome(outcome, deliveries)
        return replace(outcome, deliveries=deliveries)

    def _match(self, entry: Entry, feed: FeedConfig) -> tuple[Match, ...]:
        return tuple(self.matcher.match(entry.searchable(), feed.name, feed.tags))

    def _failed(
        self, feed: FeedConfig, exc: FetchError, now: datetime, *, dry_run: bool, previous: int
    ) -> PollOutcome:
        failures = previous + 1
        if not dry_run:
            failures = self.store.record_failure(feed.name, feed.url, exc.reason, now)
        log.warning("poll failed: %s (%d in a row)", exc, failures)
        return PollOutcome(feed.name, "failed", error=exc.reason, failures=failures)


def _too_old(published: datetime | None, cutoff: datetime) -> bool:
    return published is not None and published < cutoff


def _log_recovery(feed: str, failures: int) -> None:
    if failures:
        log.info("feed %s: recovered after %d failed polls", feed, failures)


def _log_outcome(outcome: PollOutcome, deliveries: int) -> None:
    if outcome.baseline and outcome.new_items:
        log.info(
            "feed %s: first poll, %d items stored as a baseline (not alerted)",
            outcome.feed,
            len(outcome.new_items),
        )
        return
    for item in outcome.new_items:
        for match in item.matches:
            log.info(
                "match: rule %s, feed %s, item %r, terms %s",
                match.rule,
                outcome.feed,
                one_line(item.entry.title)[:80],
                ", ".join(match.terms),
            )
    if outcome.new_items:
        log.info(
            "feed %s: %d new items, %d matches, %d deliveries queued",
            outcome.feed,
            len(outcome.new_items),
            outcome.matches,
            deliveries,
        )
