"""What every notifier shares: the interface, HTTP posting, and safe text for messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from watcher.config import Rate
from watcher.errors import DeliveryError
from watcher.http import describe, proxies_for, retry_after
from watcher.models import Alert, Digest
from watcher.text import one_line, plain

SUMMARY_LIMIT = 300
RETRYABLE_STATUS = frozenset({408, 429})


class Notifier(ABC):
    """One configured destination. ``send`` returns once the receiver acknowledged the alert,
    and raises DeliveryError otherwise, saying whether a retry may help."""

    type: ClassVar[str]
    default_rate: ClassVar[Rate | None] = None
    """The rate limit when the config sets none: a service's documented limit."""

    def __init__(
        self, name: str, options: Any, *, session: requests.Session, timeout: float
    ) -> None:
        self.name = name
        self.options = options
        self.session = session
        self.timeout = options.timeout.total_seconds() if options.timeout else timeout

    @abstractmethod
    def send_digest(self, digest: Digest) -> str | None:
        """Deliver a window's alerts as one message, like ``send``."""

    @property
    def rate(self) -> Rate | None:
        return self.options.rate or self.default_rate

    @abstractmethod
    def send(self, alert: Alert) -> str | None:
        """Deliver one alert; return a warning worth keeping (some recipients refused), or
        None."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> requests.Response:
        """POST and classify the answer: 2xx returns; 408, 429, 5xx and network failures are
        retryable; any other status is permanent."""
        try:
            response = self.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=self.timeout,
                allow_redirects=False,
                proxies=proxies_for(url),
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
            wait = retry_after(response.headers.get("Retry-After"))
            if wait is not None:
                message += f" (Retry-After {wait:g}s)"
            raise DeliveryError(
                self.name,
                f"{message}: {detail}" if detail else message,
                retryable=retryable,
                retry_after=wait,
            )


def digest_heading(digest: Digest) -> str:
    span = f"{digest.start:%Y-%m-%d %H:%M} to {digest.end:%H:%M} UTC"
    count = len(digest.alerts)
    return f"{count} alert{'s' if count != 1 else ''}, {span}"


def title_of(alert: Alert) -> str:
    return one_line(plain(alert.item.title)) or "(untitled)"


def summary_of(alert: Alert, limit: int = SUMMARY_LIMIT) -> str:
    return plain(alert.item.summary or alert.item.content, limit)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
