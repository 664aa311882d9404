"""One poll of one feed: fetch -> parse -> which entries are new -> match -> ingest."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests

from watcher.article import is_fetchable
from watcher.config import FeedConfig, Settings
from watcher.errors import FetchError, StateError
from watcher.fetch import FetchResult, fetch
from watcher.links import safe_link
from watcher.models import Entry
from watcher.parse import ParsedFeed, parse_feed
from watcher.rules import Match, Matcher
from watcher.state import FeedState, NewItem, Store, Unchanged
from watcher.text import one_line, plural, short_duration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    feed: str
    status: str
    """``new`` (a 200 was processed), ``not_modified`` (a 304, or the same body again),
    ``failed``, ``waiting`` (backing off after failures), ``gone`` (410: not polled) or
    ``dropped`` (its lease was lost before the request: another process polls it)."""
    new_items: tuple[NewItem, ...] = ()
    baseline: bool = False
    new: int = 0
    """How many items were new (``new_items`` may keep only the matched ones)."""
    deliveries: int = 0
    error: str | None = None
    failures: int = 0

    @property
    def matches(self) -> int:
        return sum(len(item.matches) for item in self.new_items)

    @property
    def articles(self) -> int:
        """New items waiting for their article before they are matched (``fulltext.py``)."""
        return sum(1 for item in self.new_items if item.article)

    def matched_only(self) -> PollOutcome:
        """The outcome without the items that matched nothing (those waiting for their
        article are kept): what a report of many polls keeps (10,000 feeds' items would
        not fit in memory)."""
        kept = tuple(item for item in self.new_items if item.matches or item.article)
        return replace(self, new_items=kept)


MAX_BACKOFF = timedelta(hours=24)
PER_HOST = 2
"""Requests at once to one host, whatever ``concurrency`` allows."""


class LeaseLost(Exception):
    """The process no longer holds the lease of the feed it was about to poll."""


def host_of(url: str) -> str:
    """The host whose requests ``PER_HOST`` counts."""
    return urlsplit(url).hostname or ""


def backoff(interval: timedelta, failures: int) -> timedelta:
    """How long a feed that failed ``failures`` times in a row waits: its interval doubled
    per failure, at most a day."""
    return min(interval * 2 ** min(failures, 20), MAX_BACKOFF)


@dataclass(frozen=True)
class Rules:
    """The rules and settings a poll runs with. A poll reads them once, so a reload during
    the poll cannot have two of its entries matched by different rules."""

    matcher: Matcher
    settings: Settings


@dataclass
class Poller:
    """What a poll needs, shared by every feed's job."""

    store: Store
    session: requests.Session
    rules: Callable[[], Rules]
    """The rules of the config running now (a reload swaps them whole)."""
    parse: Callable[[str, bytes, Mapping[str, str], str], ParsedFeed] = parse_feed
    """How bodies are parsed: in the polling thread, or in a ``ParserPool``."""
    reported: set[tuple[str, str]] = field(default_factory=set)
    unchanged: list[Unchanged] | None = None
    """When a list, polls that brought nothing new are added to it, for the caller to
    record together (``watcher once``: one transaction each was a tenth of a 304 cycle);
    None: each is recorded at once, as a daemon must to end its lease."""
    renew: Callable[[str], bool] | None = None
    """Called with a feed's name once the poll has its host's slot, right before the
    request: whether this process still holds the feed's lease, now extended (a daemon's
    claim; None in ``watcher once``). A poll that waited for the slot past its lease, while
    another process took the feed, is dropped: a process never polls on a lease it lost."""
    """(feed, kind) of the problems already reported, so each is logged once."""
    _hosts: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _hosts_lock: threading.Lock = field(default_factory=threading.Lock)

    def host_slot(self, url: str) -> threading.BoundedSemaphore:
        """The slot a request to the URL's host takes: feeds' and articles' alike."""
        host = host_of(url)
        with self._hosts_lock:
            return self._hosts.setdefault(host, threading.BoundedSemaphore(PER_HOST))

    def _report_once(self, feed: str, kind: str, message: str, *args: object) -> None:
        if (feed, kind) not in self.reported:
            self.reported.add((feed, kind))
            log.warning(message, *args)

    def poll(self, feed: FeedConfig, now: datetime, *, dry_run: bool = False) -> PollOutcome:
        """Poll a feed. Failures are returned (and recorded unless dry-run), never raised.

        A database failure (a full disk) rolls the poll back: its items stay unseen, so the
        next poll finds them again and no alert is lost.
        """
        try:
            return self._poll(feed, now, self.rules(), dry_run=dry_run)
        except StateError as exc:
            log.error("poll failed: feed %s: cannot record it in the database: %s", feed.name, exc)
            return PollOutcome(feed.name, "failed", error=f"database error: {exc}")

    def _poll(self, feed: FeedConfig, now: datetime, rules: Rules, *, dry_run: bool) -> PollOutcome:
        state = self.store.feed_state(feed.name, feed.url)
        if state.gone:
            return PollOutcome(feed.name, "gone", error=state.last_error)
        if state.failures and state.next_poll is not None and now < state.next_poll:
            return PollOutcome(feed.name, "waiting", error=state.last_error)
        try:
            return self._process(feed, state, now, rules, dry_run=dry_run)
        except LeaseLost:
            log.info(
                "feed %s: its lease ran out waiting for its host: another process has it", feed.name
            )
            return PollOutcome(feed.name, "dropped")
        except FetchError as exc:
            return self._failed(feed, exc, now, rules, dry_run=dry_run, previous=state.failures)
        except StateError:
            raise
        except Exception as exc:
            # A bug, ours or a library's, that this feed's content sets off: the feed fails and
            # backs off like any other (its traceback logged once), and the others go on.
            problem = FetchError(feed.name, f"cannot be processed, a bug ({_describe(exc)})")
            first = (feed.name, "bug") not in self.reported
            self.reported.add((feed.name, "bug"))
            trace = exc if first else None
            return self._failed(
                feed, problem, now, rules, dry_run=dry_run, previous=state.failures, trace=trace
            )

    def _process(
        self, feed: FeedConfig, state: FeedState, now: datetime, rules: Rules, *, dry_run: bool
    ) -> PollOutcome:
        """Fetch, parse, match and store: the part of a poll that a feed's content drives."""
        result = self._fetch(feed, state, rules.settings)
        body_hash = hashlib.sha256(result.body).hexdigest() if result.body else None
        if result.not_modified or (body_hash is not None and body_hash == state.body_hash):
            if not dry_run:
                unchanged = Unchanged(
                    feed.name,
                    feed.url,
                    now,
                    result.etag,
                    result.last_modified,
                    result.moved_to,
                    now + _interval(feed, rules.settings),
                )
                if self.unchanged is None:
                    self.store.record_unchanged_many([unchanged])
                else:
                    self.unchanged.append(unchanged)
                _log_recovery(feed.name, state.failures)
            return PollOutcome(feed.name, "not_modified")
        parsed = self.parse(feed.name, result.body, result.headers, result.url)
        if parsed.problem:
            message = "feed %s: parsed with errors, items used: %s"
            self._report_once(feed.name, "parse", message, feed.name, parsed.problem)
        keys = [entry.key for entry in parsed.entries]
        new_items = self._new_items(feed, state, parsed, keys, now, rules)
        baseline = not state.baseline_done and not feed.backfill
        outcome = PollOutcome(feed.name, "new", new_items, baseline=baseline, new=len(new_items))
        if dry_run:
            return outcome
        deliveries = self.store.ingest(
            feed.name,
            feed.url,
            etag=result.etag,
            last_modified=result.last_modified,
            present=keys,
            new_items=outcome.new_items,
            now=now,
            moved_to=result.moved_to,
            body_hash=body_hash,
            next_poll=now + _interval(feed, rules.settings),
        )
        _log_recovery(feed.name, state.failures)
        _log_outcome(outcome, deliveries)
        return replace(outcome, deliveries=deliveries)

    def _fetch(self, feed: FeedConfig, state: FeedState, settings: Settings) -> FetchResult:
        with self.host_slot(feed.url):
            if self.renew is not None and not self.renew(feed.name):
                raise LeaseLost(feed.name)
            result = fetch(
                self.session,
                feed.name,
                state.moved_to or feed.url,  # a permanent move is followed directly
                origin=feed.url,
                etag=state.etag,
                last_modified=state.last_modified,
                timeout=settings.timeout.total_seconds(),
                max_size=settings.max_feed_size,
                headers=feed.headers,
            )
        self._report_moves(feed, result)
        return result

    def _new_items(
        self,
        feed: FeedConfig,
        state: FeedState,
        parsed: ParsedFeed,
        keys: list[str],
        now: datetime,
        rules: Rules,
    ) -> tuple[NewItem, ...]:
        """The entries not seen before, matched unless they are the baseline of a first poll
        or older than ``max_item_age``."""
        unseen = self.store.unseen(feed.name, keys)
        baseline = not state.baseline_done and not feed.backfill
        cutoff = now - rules.settings.max_item_age
        items = []
        for entry in parsed.entries:
            if entry.key not in unseen:
                continue
            if baseline or _too_old(entry.published, cutoff):
                items.append(NewItem(entry))
            elif feed.full_text and is_fetchable(entry.link):
                items.append(NewItem(entry, article=True))  # matched once its page is read
            else:
                items.append(NewItem(entry, tuple(match_entry(rules.matcher, entry, feed))))
        return tuple(items)

    def _report_moves(self, feed: FeedConfig, result: FetchResult) -> None:
        if result.moved_to:
            self._report_once(
                feed.name,
                "moved",
                "feed %s moved permanently to %s: update its url in the config",
                feed.name,
                safe_link(result.moved_to),
            )
        if result.downgraded:
            self._report_once(
                feed.name,
                "downgrade",
                "feed %s: redirected from https to http (%s)",
                feed.name,
                safe_link(result.url),
            )

    def _failed(
        self,
        feed: FeedConfig,
        exc: FetchError,
        now: datetime,
        rules: Rules,
        *,
        dry_run: bool,
        previous: int,
        trace: BaseException | None = None,
    ) -> PollOutcome:
        """Record a failure: the feed backs off (its interval doubled per failure, at most a
        day, longer if the server asked with Retry-After); a 410 disables it. ``trace``, an
        exception that is a bug, is logged with its traceback."""
        failures = previous + 1
        gone = exc.status == 410
        delay = backoff(_interval(feed, rules.settings), previous)
        if exc.retry_after:
            delay = max(delay, timedelta(seconds=exc.retry_after))
        if not dry_run:
            failures = self.store.record_failure(
                feed.name, feed.url, one_line(exc.reason), now, retry_at=now + delay, gone=gone
            )
        if gone:
            log.error(
                "feed %s is gone (HTTP 410): no longer polled; remove it from the config", feed.name
            )
        else:
            # a failure that lasts until someone fixes the feed or its URL is an error
            log.log(
                logging.WARNING if exc.transient else logging.ERROR,
                "poll failed: %s (%d in a row; next try in %s)",
                one_line(str(exc)),
                failures,
                short_duration(delay),
                exc_info=trace,
            )
        return PollOutcome(feed.name, "failed", error=one_line(exc.reason), failures=failures)


def _describe(exc: BaseException) -> str:
    """An unexpected exception in a few words: its type, and its message cut short."""
    message = one_line(str(exc))[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def match_entry(matcher: Matcher, entry: Entry, feed: FeedConfig) -> list[Match]:
    return matcher.match(entry.searchable(), feed.name, feed.tags)


def _interval(feed: FeedConfig, settings: Settings) -> timedelta:
    return settings.interval if feed.interval is None else feed.interval


def _too_old(published: datetime | None, cutoff: datetime) -> bool:
    return published is not None and published < cutoff


def _log_recovery(feed: str, failures: int) -> None:
    if failures:
        log.info("feed %s: recovered after %s", feed, plural(failures, "failed poll"))


def _log_outcome(outcome: PollOutcome, deliveries: int) -> None:
    if outcome.baseline and outcome.new_items:
        log.info(
            "feed %s: first poll, %s stored as a baseline (not alerted)",
            outcome.feed,
            plural(len(outcome.new_items), "item"),
        )
        return
    for item in outcome.new_items:
        log_matches(outcome.feed, item.entry, item.matches)
    if outcome.new_items:
        waiting = outcome.articles
        log.info(
            "feed %s: %s, %s, %s queued%s",
            outcome.feed,
            plural(len(outcome.new_items), "new item"),
            plural(outcome.matches, "match", "matches"),
            plural(deliveries, "delivery", "deliveries"),
            f", {waiting} waiting for their article" if waiting else "",
        )


def log_matches(feed: str, entry: Entry, matches: Iterable[Match]) -> None:
    for match in matches:
        log.info(
            "match: rule %s, feed %s, item %r, terms %s",
            match.rule,
            feed,
            one_line(entry.title)[:80],
            ", ".join(match.terms),
        )
