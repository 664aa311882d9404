"""The ``full_text`` step: new items of such feeds are matched on their article's main text.

How an item goes through it, and why no alert is lost or sent twice:

1. The poll stores the feed's new items as always, in its one ingest transaction, but an
   item of a ``full_text`` feed that would be matched (not a baseline, not too old, with an
   http(s) link) is stored *pending* and unmatched (``NewItem.article``). The feed's
   validators are recorded with it, so the next poll does not bring it back.
2. The pending items in the database are the queue. A small pool of its own
   (``WORKERS`` threads, this module) claims them under a lease, oldest first, a few at a
   time: a slow article page holds one of these threads, never a poll. The queue in memory
   is bounded by the pool; the backlog waits in the database.
3. A worker fetches the page (``article.py``: the feed-fetching rules, and the per-host limit
   shared with the polls), extracts its main text, matches the current rules against the
   item with that text as ``content``, and records it all in one transaction
   (``record_article``): the text and its search words, the matches, their deliveries, and
   the end of the pending state. A page that fails for a passing cause (a 5xx, a 429, a
   timeout) is given back to the queue, due again a little later (``TRIES``, ``RETRY``);
   one that keeps failing, or fails for good (404, too large, not HTML), is logged in one
   line and the item is matched on what the feed gave, the same way.
4. ``record_article`` only records an item still pending, so two processes (PostgreSQL) or
   a lease that ran out can never alert it twice. A crash before it leaves the item pending:
   its lease runs out (or, on SQLite, the next start gives every lease back) and it is
   claimed again. So each item is alerted exactly once.

A page is fetched once: the items of one story (the same canonical link, from several
feeds) are claimed together and share one fetch, and a story whose page was fetched before
reuses that text. ``watcher once`` drains the queue before it delivers (but the items
waiting for another try of their page); ``watcher run``
keeps the pool running, woken by every poll that stored pending items. A dry run records
nothing: its items are fetched and matched in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import requests

from watcher.article import as_content, extract, fetch_page
from watcher.config import FeedConfig, Settings
from watcher.errors import FetchError, StateError
from watcher.links import canonical_link, safe_link
from watcher.models import Entry
from watcher.poll import Rules, log_matches, match_entry
from watcher.state import NewItem, PendingArticle, Store
from watcher.text import one_line, short_duration

log = logging.getLogger(__name__)

WORKERS = 4
"""Article pages fetched at once by one process."""
IDLE = 5.0
"""Longest the pool sleeps between looks for pending items when no poll woke it: items
given back by a process that died, or left by a database outage, are taken up this soon."""
UNKNOWN_FEED_WAIT = timedelta(minutes=1)
"""A pending item of a feed this process's config lacks is left this long to another."""
TRIES = 4
"""Fetches of a page that fails for a passing cause (a 5xx, a 429, a timeout, a refused
connection) before its items are matched on the feed's text: a site that buckles under the
traffic of a breaking story is read once it is back, not given up on. Only items the
feed's text matches nothing of wait for it: the others alert at once, on that text."""
RETRY = timedelta(seconds=30)
"""The wait before the second try, tripled before each next one (30 s, 90 s, 4.5 min), or
longer if the site asks (``Retry-After``)."""
RETRY_MOST = timedelta(minutes=10)
"""The longest wait before another try, whatever the site asks."""


def lease(settings: Settings) -> timedelta:
    """How long a claimed item is this process's: its fetch, after waiting for a slot of its
    host behind the pool's other fetches, ends well before."""
    return settings.timeout * (WORKERS + 2) + timedelta(seconds=10)


@dataclass(frozen=True)
class ArticleOutcome:
    """One item through the step: as recorded, with its matches."""

    feed: str
    item: NewItem
    deliveries: int = 0
    fetched: bool = False


HostSlot = Callable[[str], AbstractContextManager[object]]


class FullText:
    """Fetches, extracts, matches and records the pending items of ``full_text`` feeds."""

    def __init__(
        self,
        store: Store,
        session: requests.Session,
        rules: Callable[[], Rules],
        feed: Callable[[str], FeedConfig | None],
        host_slot: HostSlot,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_outcome: Callable[[ArticleOutcome], None] | None = None,
        workers: int = WORKERS,
    ) -> None:
        self.store = store
        self.session = session
        self.rules = rules
        self.feed = feed
        self.host_slot = host_slot
        self.clock = clock
        self.on_outcome = on_outcome
        self.workers = workers
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._trouble_told = False

    # watcher once

    def drain(self) -> list[ArticleOutcome]:
        """Complete every pending item that can be claimed, ``workers`` at a time, and
        return what became of them."""
        outcomes: list[ArticleOutcome] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="article") as pool:
            while True:
                try:
                    groups = self._claim(self.workers)
                except StateError as exc:
                    log.error("articles: the database cannot be used: %s", exc)
                    break
                if not groups:
                    break
                for done in pool.map(self._settle, groups):
                    outcomes += done
        return outcomes

    def in_memory(self, feed: FeedConfig, items: Sequence[NewItem]) -> list[NewItem]:
        """A dry run's pending items fetched and matched, nothing recorded."""
        rules = self.rules()
        pages: dict[str, str | None] = {}
        done = []
        for item in items:
            if not item.article:
                done.append(item)
                continue
            story = canonical_link(item.entry.link) or item.entry.link
            if story not in pages:
                pages[story] = self._read(feed, item.entry.link)
            entry = _with_content(item.entry, pages[story])
            done.append(NewItem(entry, tuple(match_entry(rules.matcher, entry, feed))))
        return done

    # watcher run

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="article")
        self._thread = threading.Thread(target=self._run, name="articles", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for pending items now (a poll stored some)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more and wait for the fetches in flight (each ends by its
        deadline); items claimed and not done stay pending, their leases run out."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        assert self._pool is not None
        while not self._stopping.is_set():
            self._wake.clear()
            with self._lock:
                room = self.workers - len(self._in_flight)
            try:
                groups = self._claim(room) if room > 0 else []
                self._trouble_told = False
            except StateError as exc:
                if not self._trouble_told:
                    log.error("articles paused: the database cannot be used: %s", exc)
                    self._trouble_told = True
                groups = []
            except Exception:  # a bug: logged, and the loop goes on
                log.exception("articles: claiming failed")
                groups = []
            for group in groups:
                self._pool.submit(self._complete_and_report, group)
            if not groups:
                self._wake.wait(IDLE)

    def _complete_and_report(self, group: list[PendingArticle]) -> None:
        outcomes = self._settle(group)
        self._wake.set()
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(outcome)

    def _settle(self, group: list[PendingArticle]) -> list[ArticleOutcome]:
        """``_complete``, its failures logged: an item that could not be recorded stays
        pending, and is taken up again once its lease ran out (at the next start on
        SQLite)."""
        try:
            return self._complete(group)
        except StateError as exc:
            log.error("articles: cannot record them in the database: %s", exc)
        except Exception:  # a bug
            log.exception("articles: an item could not be completed")
        finally:
            with self._lock:
                self._in_flight.difference_update(item.id for item in group)
        return []

    # both

    def _claim(self, room: int) -> list[list[PendingArticle]]:
        """Claim up to ``room`` stories' pending items, grouped by story; items this process
        is still working on (a lease that ran out while waiting for a host slot) are left."""
        if room <= 0:
            return []
        settings = self.rules().settings
        claimed = self.store.claim_articles(self.clock(), room, lease(settings))
        groups: dict[str, list[PendingArticle]] = {}
        with self._lock:
            for item in claimed:
                if item.id in self._in_flight:
                    continue
                self._in_flight.add(item.id)
                groups.setdefault(item.canonical or f"#{item.id}", []).append(item)
        return list(groups.values())

    def _complete(self, group: list[PendingArticle]) -> list[ArticleOutcome]:
        """Fetch the page of one story once, then match and record each of its items."""
        known = [(item, self.feed(item.feed)) for item in group]
        absent = [item.id for item, feed in known if feed is None]
        if absent:
            self.store.release_articles(absent, until=self.clock() + UNKNOWN_FEED_WAIT)
            with self._lock:
                self._in_flight.difference_update(absent)
        present = [(item, feed) for item, feed in known if feed is not None]
        if not present:
            return []
        content = self.store.fetched_article(group[0].canonical)
        if content is None:
            reader = next((feed for _, feed in present if feed.full_text), None)
            if reader is not None:
                link = next(item.entry.link for item, feed in present if feed is reader)
                tries = max(item.tries for item, _ in present) + 1
                try:
                    content = self._read(reader, link, retry=tries < TRIES)
                except _Later as later:
                    if self._matched(present):  # alerts now, on the feed's text
                        _log_failure(reader.name, later.cause, link)
                    else:
                        wait = retry_wait(tries, later.asked)
                        _log_retry(reader.name, later.cause, wait, link)
                        ids = [item.id for item, _ in present]
                        self.store.release_articles(ids, until=self.clock() + wait, tried=True)
                        return []
        rules = self.rules()
        outcomes = []
        for item, feed in present:
            entry = _with_content(item.entry, content)
            matches = tuple(match_entry(rules.matcher, entry, feed))
            created = self.store.record_article(
                item.id, item.feed, entry, matches, self.clock(), fetched=content is not None
            )
            if created is None:  # another process recorded it
                continue
            log_matches(item.feed, entry, matches)
            outcomes.append(
                ArticleOutcome(item.feed, NewItem(entry, matches), created, content is not None)
            )
        return outcomes

    def _matched(self, items: Sequence[tuple[PendingArticle, FeedConfig]]) -> bool:
        """Whether a rule matches one of the items on the feed's text alone."""
        matcher = self.rules().matcher
        return any(match_entry(matcher, item.entry, feed) for item, feed in items)

    def _read(self, feed: FeedConfig, link: str, *, retry: bool = False) -> str | None:
        """The article's main text as an item's content, or None when it cannot be had
        (one log line says why, and the item is matched on what the feed gave). With
        ``retry``, a failure with a passing cause raises ``_Later`` instead."""
        settings = self.rules().settings
        try:
            with self.host_slot(link):
                page = fetch_page(
                    self.session,
                    feed.name,
                    feed.url,
                    link,
                    timeout=settings.timeout.total_seconds(),
                    max_size=settings.max_feed_size,
                )
            text = extract(page)
            if not text.strip():
                raise FetchError(feed.name, "no article text found in the page")
        except FetchError as exc:
            if retry and exc.transient:
                asked = timedelta(seconds=exc.retry_after or 0)
                raise _Later(one_line(exc.reason), asked) from None
            _log_failure(feed.name, one_line(exc.reason), link)
            return None
        except Exception as exc:  # a bug, ours or a library's, that this page sets off
            _log_failure(feed.name, f"cannot be extracted, a bug ({type(exc).__name__})", link)
            return None
        return as_content(text)


def retry_wait(tries: int, asked: timedelta) -> timedelta:
    """The wait after the ``tries``-th failed fetch of a page, the site having asked for
    ``asked`` (``Retry-After``, or 0)."""
    return min(max(RETRY * 3 ** (tries - 1), asked), RETRY_MOST)


class _Later(Exception):
    """A page failed for a passing cause: its items are to be tried again later."""

    def __init__(self, cause: str, asked: timedelta) -> None:
        super().__init__(cause)
        self.cause = cause
        self.asked = asked
        """How long the site asked us to wait (``Retry-After``), or 0."""


def _with_content(entry: Entry, content: str | None) -> Entry:
    return entry if content is None else replace(entry, content=content)


def _log_retry(feed: str, cause: str, wait: timedelta, link: str) -> None:
    log.warning(
        "feed %s: article page failed (%s); trying again in %s: %s",
        feed,
        cause,
        short_duration(wait),
        safe_link(link) or "(no http(s) link)",
    )


def _log_failure(feed: str, cause: str, link: str) -> None:
    log.warning(
        "feed %s: article not used (%s); the item is matched on the feed's text: %s",
        feed,
        cause,
        safe_link(link) or "(no http(s) link)",
    )


def merge(outcomes: Iterable[ArticleOutcome], into: list[NewItem]) -> list[NewItem]:
    """A poll's new items with those completed by the step put in their place."""
    done = {outcome.item.entry.key: outcome.item for outcome in outcomes}
    return [done.get(item.entry.key, item) for item in into]
