"""Apprise: one URL reaches Telegram, ntfy, Matrix, Teams, Pushover and a hundred more.

An optional extra (``pip install 'watcher-feeds[apprise]'``); the config refuses an ``apprise``
notifier when it is missing. Apprise tells only whether a notification went out, not why
not, so every failure is retried.
"""

from __future__ import annotations

import importlib
from typing import Any

from watcher.errors import DeliveryError
from watcher.links import safe_link
from watcher.models import Alert, Digest
from watcher.notify.base import (
    Notifier,
    also_reported,
    digest_heading,
    more_sources,
    summary_of,
    title_of,
)


def body(alert: Alert) -> str:
    lines = [summary_of(alert, 500), safe_link(alert.item.link)]
    lines.append(f"{alert.rule} · {alert.feed_name} · matched {', '.join(alert.terms)}")
    lines.append(also_reported(alert))
    return "\n\n".join(line for line in lines if line)


def digest_body(digest: Digest) -> str:
    return "\n".join(
        f"- {title_of(alert)} {safe_link(alert.item.link)} ({alert.rule}){more_sources(alert)}"
        for alert in digest.alerts
    )


class AppriseNotifier(Notifier):
    type = "apprise"

    def __init__(self, name: str, options: Any, **shared: Any) -> None:
        super().__init__(name, options, **shared)
        self._apprise = importlib.import_module("apprise")

    def send(self, alert: Alert) -> str | None:
        return self._notify(f"[watcher] {alert.rule}: {title_of(alert)}", body(alert))

    def send_digest(self, digest: Digest) -> str | None:
        return self._notify(f"[watcher] {digest_heading(digest)}", digest_body(digest))

    def _notify(self, title: str, text: str) -> str | None:
        service = self._apprise.Apprise()
        if not service.add(self.options.url.get_secret_value()):
            raise DeliveryError(self.name, "Apprise does not accept the URL", retryable=False)
        if not service.notify(title=title, body=text):
            raise DeliveryError(self.name, "Apprise could not deliver (see the service)")
        return None
