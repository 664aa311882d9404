"""The objects of the machine-readable listings: what ``--json`` prints and the JSON API
serves, built once so that both always say the same. Plain dicts of JSON values; times are
ISO 8601 UTC, links only http(s) (``safe_link``), titles on one line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from watcher.links import safe_link, shown_url
from watcher.state import DeliveryRow, FeedState, StoredItem, StoredMatch, StoredStory
from watcher.text import one_line


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def feed_record(name: str, url: str, state: FeedState, items: int) -> dict[str, Any]:
    return {
        "name": name,
        "url": shown_url(url),
        "status": state.status,
        "last_success": iso(state.last_success),
        "failures": state.failures,
        "last_error": state.last_error,
        "next_try": iso(state.next_poll),
        "next_poll": None if state.gone else iso(state.next_poll),
        "moved_to": state.moved_to and shown_url(state.moved_to),
        "items": items,
    }


def item_record(item: StoredItem, terms: Sequence[str]) -> dict[str, Any]:
    entry = item.entry
    return {
        "feed": item.feed,
        "key": entry.key,
        "title": one_line(entry.title),
        "link": safe_link(entry.link),
        "published": iso(entry.published),
        "first_seen": item.first_seen.isoformat(),
        "matched": list(terms),
    }


def match_record(match: StoredMatch) -> dict[str, Any]:
    return {
        **item_record(match.item, match.terms),
        "rule": match.rule,
        "detected_at": match.detected_at.isoformat(),
        "deliveries": dict(d.split(":", 1) for d in match.deliveries),
    }


def story_record(story: StoredStory) -> dict[str, Any]:
    """A story: its first report (the one that alerted), and the story with every report,
    the first included."""
    return {
        **match_record(story.reports[0]),
        "story": {
            "id": story.id,
            "first_seen": story.first_seen.isoformat(),
            "last_seen": story.last_seen.isoformat(),
            "outlets": list(story.outlets),
            "reports": [match_record(report) for report in story.reports],
        },
    }


def delivery_record(delivery: DeliveryRow) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "delivery_id": delivery.delivery_id,
        "notifier": delivery.notifier,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt": iso(delivery.next_attempt) if delivery.status == "pending" else None,
        "sent_at": iso(delivery.sent_at),
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "rule": delivery.rule,
        "feed": delivery.feed,
        "title": one_line(delivery.title),
    }
