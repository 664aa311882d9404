"""What every notifier shares: the interface, HTTP posting, and safe text for messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from watcher.errors import DeliveryError
from watcher.http import describe
from watcher.models import Alert
from watcher.text import one_line, plain

SUMMARY_LIMIT = 300
RETRYABLE_STATUS = frozenset({408, 429})


class Notifier(ABC):
    """One configured destination. ``send`` returns once the receiver acknowledged the alert,
    and raises DeliveryError otherwise, saying whether a retry may help."""

    type: ClassVar[str]

    def __init__(
        self, name: str, options: Any, *, session: requests.Session, timeout: float
    ) -> None:
        self.name = name
        self.options = options
        self.session = session
        self.timeout = options.timeout.total_seconds() if options.timeout else timeout

    @abstractmethod
    def send(self, alert: Alert) -> None: ...

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> requests.Response:
        """POST and classify the answer: 2xx returns; 408, 429, 5xx and network failures are
        retryable; any other status is permanent."""
        try:
            response = self.session.post(
                url, data=body, headers=dict(headers), timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise DeliveryError(self.name, describe(exc, self.timeout)) from exc
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return response
            retryable = status >= 500 or status in RETRYABLE_STATUS
            detail = one_line(response.text[:200]) if not retryable else ""
            message = f"HTTP {status} {response.reason or ''}".strip()
            raise DeliveryError(
                self.name, f"{message}: {detail}" if detail else message, retryable=retryable
            )


def safe_link(link: str) -> str:
    """The link if it is http(s), else empty: ``javascript:`` or ``data:`` is never clickable."""
    parts = urlsplit(link.strip())
    return link.strip() if parts.scheme in ("http", "https") and parts.netloc else ""


def title_of(alert: Alert) -> str:
    return one_line(plain(alert.item.title)) or "(untitled)"


def summary_of(alert: Alert, limit: int = SUMMARY_LIMIT) -> str:
    return plain(alert.item.summary or alert.item.content, limit)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
