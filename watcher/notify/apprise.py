"""Apprise: one URL reaches Telegram, ntfy, Matrix, Teams, Pushover and a hundred more.

An optional extra (``pip install 'watcher-feeds[apprise]'``); the config refuses an ``apprise``
notifier when it is missing. Apprise tells only whether a notification went out, not why
not, so every failure is retried, and it sees no ``Retry-After``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Literal

from pydantic import SecretStr, field_validator

from watcher import DISTRIBUTION
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
from watcher.notify.options import NotifierOptions
from watcher.notify.registry import Channel


class AppriseOptions(NotifierOptions):
    type: Literal["apprise"]
    url: SecretStr  # any Apprise URL (tgram://, ntfy://, matrix://, ...); empty: disabled

    @field_validator("type")
    @classmethod
    def _installed(cls, value: str) -> str:
        """An optional extra: the config says how to install it (at ``type``)."""
        if importlib.util.find_spec("apprise") is None:
            raise ValueError(
                f"the apprise notifier needs the extra: pip install '{DISTRIBUTION}[apprise]'"
            )
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.url.get_secret_value())


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
    options: AppriseOptions

    def __init__(self, name: str, options: Any, **shared: Any) -> None:
        super().__init__(name, options, **shared)
        self._apprise = importlib.import_module("apprise")

    def send(self, alert: Alert) -> str | None:
        return self._notify(f"[watcher] {alert.rule}: {title_of(alert)}", body(alert))

    def send_digest(self, digest: Digest) -> str | None:
        return self._notify(f"[watcher] {digest_heading(digest)}", digest_body(digest))

    def service(self) -> Any:
        """The Apprise object for one send: each of its waits (connection, answer) ends by
        this notifier's ``timeout``, not by Apprise's own 4 s."""
        service = self._apprise.Apprise()
        if not service.add(self.options.url.get_secret_value()):
            raise DeliveryError(self.name, "Apprise does not accept the URL", retryable=False)
        for server in service:
            server.socket_connect_timeout = server.socket_read_timeout = self.timeout
        return service

    def _notify(self, title: str, text: str) -> str | None:
        # Given as plain text, Apprise escapes it for each service's own format (HTML for
        # Telegram, Markdown for others), so that feed text never reaches one as markup.
        text_format = self._apprise.NotifyFormat.TEXT
        if not self.service().notify(title=title, body=text, body_format=text_format):
            raise DeliveryError(self.name, "Apprise could not deliver (see the service)")
        return None


CHANNEL = Channel(AppriseOptions, AppriseNotifier)
