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


@dataclass(frozen=True)
class Digest:
    """Every alert of one notifier's window, sent as one message."""

    digest_id: str
    start: datetime
    end: datetime
    alerts: tuple[Alert, ...]
