"""What the rest of watcher sees of its state: plain records and one small interface, split
by caller (polls, the outbox, reports, upkeep). Two backends implement it: SQLite for one
process, PostgreSQL for many (``open_store`` picks one from ``settings.database``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from watcher.models import Alert, Entry
from watcher.rules import Match


def timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with a fixed width, so that text order is time order (``isoformat``
    pads years to four digits, where ``strftime`` did not, and takes a third of its time)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def from_timestamp(text: str | None) -> datetime | None:
    """A time ``timestamp`` wrote. ``fromisoformat`` reads it ten times faster than
    ``strptime``, which took most of the time of reading rows (a page of 2,000 items)."""
    if not text:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)


SearchWord = tuple[str, bool]
"""A normalised word of a search, and whether it is a prefix (True: any word starting with it)."""


@dataclass(frozen=True)
class FeedState:
    name: str
    etag: str | None = None
    last_modified: str | None = None
    baseline_done: bool = False
    failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    next_poll: datetime | None = None
    """When the feed is due next (after failures: when its backoff ends)."""
    lease_owner: str | None = None
    """The process polling the feed now, if one is."""
    gone: bool = False
    moved_to: str | None = None
    body_hash: str | None = None

    @property
    def status(self) -> str:
        """``new`` (never polled), ``gone`` (410), ``failing``, ``moved`` (a permanent
        redirect) or ``ok``; ``FEED_STATUS`` in sql.py says the same in SQL."""
        if self.last_success is None and not self.failures:
            return "new"
        if self.gone:
            return "gone"
        if self.failures:
            return "failing"
        return "moved" if self.moved_to else "ok"


FEED_STATUSES = ("ok", "failing", "new", "moved", "gone")


@dataclass(frozen=True)
class FeedRow:
    """A feed as the pages list it: what is known of it, its URL and its stored items."""

    state: FeedState
    url: str
    items: int


@dataclass(frozen=True)
class Unchanged:
    """A successful poll that brought nothing new, to record (``record_unchanged``)."""

    name: str
    url: str
    now: datetime
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None
    next_poll: datetime | None = None


@dataclass(frozen=True)
class NewItem:
    """An entry not seen before in its feed, with the matches to alert (none for a baseline)."""

    entry: Entry
    matches: tuple[Match, ...] = ()
    article: bool = False
    """Its matching waits for its article (a ``full_text`` feed): stored as pending, it is
    matched and its alerts recorded once its page was fetched or failed (``Articles``)."""


@dataclass(frozen=True)
class PendingArticle:
    """An item whose article is to be fetched before it is matched."""

    id: int
    feed: str
    entry: Entry
    canonical: str
    """Its canonical link: items of the same story share their page, fetched once."""
    tries: int = 0
    """Fetches of its page that failed for a passing cause, and are to be tried again."""


@dataclass(frozen=True)
class StoredItem:
    feed: str
    entry: Entry
    first_seen: datetime


@dataclass(frozen=True)
class StoredMatch:
    rule: str
    terms: tuple[str, ...]
    detected_at: datetime
    item: StoredItem
    deliveries: tuple[str, ...]
    """``notifier:status`` of each delivery of the match."""
    story: int | None = None
    """The story the match belongs to (it opened it, or it was grouped into it)."""


@dataclass(frozen=True)
class StoredStory:
    """A story of a rule: the reports that tell it, the first of which alerted."""

    id: int
    rule: str
    first_seen: datetime
    last_seen: datetime
    reports: tuple[StoredMatch, ...]
    """In the order they were detected."""

    @property
    def outlets(self) -> tuple[str, ...]:
        """The feeds that reported it, first come first."""
        return tuple(dict.fromkeys(report.item.feed for report in self.reports))


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as ``watcher deliveries`` lists it."""

    id: int
    delivery_id: str
    notifier: str
    status: str
    attempts: int
    next_attempt: datetime | None
    sent_at: datetime | None
    last_error: str | None
    created_at: datetime
    rule: str
    feed: str
    title: str


@dataclass(frozen=True)
class Delivery:
    id: int
    notifier: str
    attempts: int
    created_at: datetime
    alert: Alert


@dataclass(frozen=True)
class ScheduledFeed:
    """A configured feed as the schedule needs it."""

    name: str
    url: str
    interval: timedelta
    first_poll: datetime
    """When a feed new to the database is first due (first polls are spread by the caller)."""


@dataclass(frozen=True)
class Process:
    """A ``watcher run`` process, as it registers itself and ``watcher status`` lists it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    feeds: int = 0
    """Feeds it holds a lease on now."""
    notifiers: int = 0
    """Notifiers whose deliveries it sends now."""


class Schedule(ABC):
    """When each feed is due, and which process polls it: a feed is polled by the process
    that claimed it, under a lease that runs out if that process dies."""

    @abstractmethod
    def sync_feeds(
        self, feeds: Sequence[ScheduledFeed], now: datetime, *, retire: bool = True
    ) -> None:
        """Make these the feeds to poll: new ones are first due at their ``first_poll``, one
        whose URL changed starts afresh (health, backoff, gone), a shortened interval
        brings the next poll forward, and with ``retire`` feeds no longer configured are no
        longer claimed (their items stay). Processes sharing a database during a rolling
        config change do not retire: another may still have the feed."""

    @abstractmethod
    def claim_feeds(self, owner: str, now: datetime, limit: int, lease: timedelta) -> list[str]:
        """Lease up to ``limit`` due feeds that no live process holds, earliest due first."""

    @abstractmethod
    def next_due(self) -> datetime | None:
        """When a claim could next take a feed: the earliest next poll, or for a feed being
        polled, the end of its lease if that is later."""

    @abstractmethod
    def renew_feed(self, owner: str, name: str, until: datetime) -> bool:
        """Extend the owner's lease on a feed to ``until``; False when the owner holds it no
        longer (it ran out, and another process claimed the feed)."""

    @abstractmethod
    def release_feeds(
        self, owner: str, names: Sequence[str] = (), *, until: datetime | None = None
    ) -> None:
        """Give back leases on feeds (all of the owner's when ``names`` is empty), due again
        at ``until`` when given."""

    @abstractmethod
    def claim_notifiers(
        self, owner: str, names: Sequence[str], now: datetime, lease: timedelta
    ) -> list[str]:
        """Of these notifiers, those this process sends for until the lease ends: the ones it
        held already (renewed) and the free ones. One process at a time sends a notifier's
        deliveries, so their order and its rate limit hold across processes."""

    @abstractmethod
    def release_notifiers(self, owner: str) -> None:
        """Give back every notifier lease of the owner."""

    @abstractmethod
    def heartbeat(self, process: Process) -> None:
        """Record that a process is alive (``watcher status`` lists the live ones)."""

    @abstractmethod
    def processes(self, since: datetime) -> list[Process]:
        """The processes seen since a time, with the leases they hold."""

    @abstractmethod
    def forget_process(self, process_id: str) -> None:
        """A process that stops cleanly leaves the list and gives back its leases."""


class PollState(ABC):
    """What a poll reads and writes."""

    @abstractmethod
    def feed_state(self, name: str, url: str | None = None) -> FeedState:
        """What is known of a feed; when the config now gives it another ``url``, only its
        baseline is kept (validators, health and backoff were the old URL's)."""

    @abstractmethod
    def unseen(self, feed: str, keys: Sequence[str]) -> set[str]:
        """The keys not yet stored for this feed."""

    @abstractmethod
    def ingest(
        self,
        feed: str,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        present: Sequence[str],
        new_items: Iterable[NewItem],
        now: datetime,
        moved_to: str | None = None,
        body_hash: str | None = None,
        next_poll: datetime | None = None,
    ) -> int:
        """Record a successful poll in one transaction: new items, their matches and the
        matches' deliveries, the keys still present, the feed's validators, when it is due
        next, and the end of its lease. Return the number of deliveries created."""

    @abstractmethod
    def record_unchanged(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        moved_to: str | None = None,
        next_poll: datetime | None = None,
    ) -> None:
        """A successful poll that brought nothing new (a 304, or the same body again): the
        items of the last full poll are still in the feed (retention keeps them)."""

    @abstractmethod
    def record_unchanged_many(self, polls: Sequence[Unchanged]) -> None:
        """``record_unchanged`` of many polls, in a few transactions."""

    @abstractmethod
    def record_failure(
        self,
        name: str,
        url: str,
        error: str,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        gone: bool = False,
    ) -> int:
        """Note a failed poll, the time before which the feed is not polled again (its next
        poll), and whether it is gone for good; return the number of consecutive failures."""


class Articles(ABC):
    """The items of ``full_text`` feeds waiting for their article: the database is their
    queue, so an item stored by a poll is matched exactly once, by whichever process
    records its article first, even across a crash."""

    @abstractmethod
    def claim_articles(self, now: datetime, limit: int, lease: timedelta) -> list[PendingArticle]:
        """Lease up to ``limit`` pending items of configured feeds that no live process
        holds, oldest first, each with the other pending items of its story (the same
        canonical link), so that a page is fetched once for all of them. The items of a
        story that waits for another try of its page are left until then, newcomers too."""

    @abstractmethod
    def release_articles(
        self, item_ids: Sequence[int], until: datetime | None = None, *, tried: bool = False
    ) -> None:
        """Give back leased pending items, to be claimed again from ``until`` on; ``tried``:
        after a failed fetch of their page, counted in their ``tries``."""

    @abstractmethod
    def fetched_article(self, canonical: str) -> str | None:
        """The content fetched earlier for an item of the same story, if any: a page that
        two feeds link to is fetched once."""

    @abstractmethod
    def record_article(
        self,
        item_id: int,
        feed: str,
        entry: Entry,
        matches: Iterable[Match],
        now: datetime,
        *,
        fetched: bool,
    ) -> int | None:
        """In one transaction, if the item is still pending: store ``entry`` (its content the
        article's text when ``fetched``) with its search words, its matches and their
        deliveries, and mark it done. Return the deliveries created, or None when the
        item was no longer pending (another process recorded it, or it was pruned)."""


class Outbox(ABC):
    """What the delivery worker reads and writes."""

    @abstractmethod
    def notifiers_due(self, now: datetime, notifiers: Iterable[str]) -> list[str]:
        """The notifiers that have a delivery due."""

    @abstractmethod
    def due_deliveries(
        self, now: datetime, notifiers: Iterable[str], limit: int = 200
    ) -> list[Delivery]:
        """Pending deliveries whose time has come and that nobody holds, oldest first."""

    @abstractmethod
    def claim(self, delivery_ids: int | Sequence[int], now: datetime, lease: timedelta) -> bool:
        """Lease pending deliveries for sending, all or none; False when another holds one
        or one is no longer pending. A lease that ran out (its holder died) is taken back."""

    @abstractmethod
    def mark_sent(
        self, delivery_ids: int | Sequence[int], now: datetime, note: str | None = None
    ) -> None:
        """Record acknowledged deliveries (a digest's together); ``note`` keeps a warning.
        Only pending ones: a delivery another pass already recorded stays as it is."""

    @abstractmethod
    def mark_failed(
        self,
        delivery_ids: int | Sequence[int],
        error: str,
        *,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        """Record a failed attempt: pending until ``retry_at``, or dead when it is None."""

    @abstractmethod
    def bury_orphans(self, notifiers: Sequence[str], reason: str, now: datetime) -> dict[str, int]:
        """Mark dead, with ``reason``, the pending deliveries of every notifier not among
        ``notifiers`` (removed from the config): nothing would ever send them, and they would
        keep their items from being pruned. ``watcher retry`` requeues them once the
        notifier is back. Return how many, by notifier."""

    @abstractmethod
    def release_leases(self) -> int:
        """Give back every lease (deliveries', feeds', notifiers', pending articles'), for
        the one process that may poll an SQLite database: a lease left there is a dead
        predecessor's. A pending article waiting for another try of its page keeps its
        wait (it was given back with it; at worst it waits one lease). Return the
        deliveries that were being sent."""


class Reports(ABC):
    """What the commands and pages that only look read."""

    @abstractmethod
    def feed_states(self) -> dict[str, FeedState]: ...

    @abstractmethod
    def item_counts(self) -> dict[str, int]: ...

    @abstractmethod
    def feed_health(self) -> dict[str, int]:
        """The feeds scheduled now (configured), counted by ``FeedState.status``."""

    @abstractmethod
    def feed_rows(
        self, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[FeedRow]:
        """Up to ``limit`` feeds scheduled now, by name (those after ``after``), only those
        of a ``status`` when given: a page of a list too long to read at once."""

    @abstractmethod
    def feed_row(self, name: str) -> FeedRow | None:
        """A feed the database knows (scheduled now or not), or None."""

    @abstractmethod
    def item_count(self, feed: str | None = None) -> int: ...

    @abstractmethod
    def items_since(self, since: datetime, feed: str | None = None) -> Iterator[StoredItem]:
        """Items first seen since a time, newest first, optionally of one feed."""

    @abstractmethod
    def search_candidates(
        self, clauses: Sequence[Collection[SearchWord]], limit: int, before_id: int | None = None
    ) -> list[tuple[int, StoredItem]]:
        """Up to ``limit`` items, newest first (by id, below ``before_id`` when given), that
        may match a search: each holds, for every clause, at least one of the clause's
        words in a field a query can name (or its feed's name). Items whose words are too
        many to index are always among them; with no clause, every item is.

        This is the full-text index narrowing a search down; ``watcher.search`` decides
        with the rules' matcher. The words are normalised as ``text.words`` gives them.
        """

    @abstractmethod
    def recent_matches(
        self, since: datetime, rule: str | None = None, limit: int = 100
    ) -> list[StoredMatch]:
        """Matches detected since a time, newest first, with their deliveries' states."""

    @abstractmethod
    def stories(
        self, since: datetime, rule: str | None = None, limit: int = 100
    ) -> list[StoredStory]:
        """Stories with a report detected since a time, the latest reported first, each with
        all its reports."""

    @abstractmethod
    def story(self, story_id: int) -> StoredStory | None:
        """One story with all its reports, or None when there is none of that id."""

    @abstractmethod
    def deliveries(
        self, *, failed: bool = False, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        """The outbox, newest first; ``failed``: only dead deliveries and pending ones that
        have failed at least once; ``status``: only those in it (pending, sent, dead)."""

    @abstractmethod
    def delivery_counts(self) -> dict[str, int]: ...

    @abstractmethod
    def size(self) -> int:
        """Bytes the database takes on disk."""


class Upkeep(ABC):
    """Retention, requeueing, health and closing."""

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete the items last seen in their feed before a time, with their matches and
        finished deliveries; an item still in its feed or with a pending delivery is kept.
        Return how many items went."""

    @abstractmethod
    def requeue(self, ids: Sequence[int], now: datetime) -> int:
        """Put dead deliveries (those of ``ids``, or all when empty) back in the queue, due
        now and with a fresh ``give_up`` period; return how many."""

    @abstractmethod
    def writable(self) -> str | None:
        """What keeps the database from being written, or None when it can be."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection; call once the worker threads are done."""


class Store(Schedule, PollState, Articles, Outbox, Reports, Upkeep, ABC):
    """The whole state interface; each backend implements it, and one contract test suite
    runs over each."""

    description: str
    """Where the state lives, for people: a path, or a URL without its password."""
