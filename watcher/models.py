"""Plain data passed between the stages: entries parsed from feeds and alerts to deliver."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Entry:
    """One feed item, normalised; text fields may hold HTML, as the feed gave them."""

    key: str
    title: str = ""
    link: str = ""
    summary: str = ""
    content: str = ""
    author: str = ""
    tags: tuple[str, ...] = ()
    published: datetime | None = None

    def searchable(self) -> dict[str, str]:
        """The fields a query can name (the feed's name is added by the matcher)."""
        return {
            "title": self.title,
            "summary": self.summary,
            "content": self.content if self.content != self.summary else "",
            "author": self.author,
            "tags": " , ".join(self.tags),
            "link": self.link,
        }


@dataclass(frozen=True)
class StoryReport:
    """One outlet's report of a story."""

    feed: str
    title: str
    link: str
    published: datetime | None
    detected_at: datetime


@dataclass(frozen=True)
class Story:
    """The reports of one story that a rule matched, the first being the one that alerted,
    as they stand when an alert leaves."""

    id: int
    reports: tuple[StoryReport, ...] = ()

    def outlets(self, besides: str | None = None) -> tuple[str, ...]:
        """The feeds that reported it, first come first, but ``besides``."""
        return tuple(dict.fromkeys(r.feed for r in self.reports if r.feed != besides))


@dataclass(frozen=True)
class Alert:
    """What a notifier sends: one match of one item, for one delivery."""

    delivery_id: str
    rule: str
    terms: tuple[str, ...]
    feed_name: str
    feed_url: str
    item: Entry
    detected_at: datetime
    words: tuple[str, ...] = ()
    """The normalised words that made the match, to highlight."""
    story: Story | None = None
    """The story the match opened, with the reports grouped into it since."""

    @property
    def also_reported_by(self) -> tuple[str, ...]:
        """The other feeds that reported the story so far."""
        return self.story.outlets(besides=self.feed_name) if self.story else ()


@dataclass(frozen=True)
class Digest:
    """Every alert of one notifier's window, sent as one message."""

    digest_id: str
    start: datetime
    end: datetime
    alerts: tuple[Alert, ...]
