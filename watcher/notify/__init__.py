"""Notifiers, one module per channel, found by their YAML ``type``."""

from __future__ import annotations

import requests

from watcher.config import Config
from watcher.notify.apprise import AppriseNotifier
from watcher.notify.base import Notifier, adapter_for
from watcher.notify.discord import DiscordNotifier
from watcher.notify.email import EmailNotifier
from watcher.notify.slack import SlackNotifier
from watcher.notify.webhook import WebhookNotifier

REGISTRY: dict[str, type[Notifier]] = {
    cls.type: cls
    for cls in (WebhookNotifier, SlackNotifier, DiscordNotifier, EmailNotifier, AppriseNotifier)
}


def build_notifiers(config: Config, session: requests.Session) -> dict[str, Notifier]:
    """The enabled notifiers of a config, by name."""
    adapter_for(session)  # mounted now, before the session is shared between threads
    timeout = config.settings.timeout.total_seconds()
    return {
        name: REGISTRY[options.type](name, options, session=session, timeout=timeout)
        for name, options in config.notify.items()
        if options.enabled
    }


__all__ = ["REGISTRY", "Notifier", "build_notifiers"]
