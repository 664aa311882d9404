"""Notifiers, one module per channel, found by their YAML ``type``.

A channel's module is imported when a notifier of that type is built, so a command or a
config that sends nothing through email or Apprise never pays for their libraries.
"""

from __future__ import annotations

import importlib

import requests

from watcher.config import Config
from watcher.notify.base import Notifier, adapter_for

REGISTRY: dict[str, str] = {
    "webhook": "watcher.notify.webhook:WebhookNotifier",
    "slack": "watcher.notify.slack:SlackNotifier",
    "discord": "watcher.notify.discord:DiscordNotifier",
    "email": "watcher.notify.email:EmailNotifier",
    "apprise": "watcher.notify.apprise:AppriseNotifier",
}
"""YAML ``type`` -> the notifier class, as ``module:Class``."""


def notifier_class(kind: str) -> type[Notifier]:
    module, _, name = REGISTRY[kind].partition(":")
    cls: type[Notifier] = getattr(importlib.import_module(module), name)
    return cls


def build_notifiers(config: Config, session: requests.Session) -> dict[str, Notifier]:
    """The enabled notifiers of a config, by name."""
    adapter_for(session)  # mounted now, before the session is shared between threads
    timeout = config.settings.timeout.total_seconds()
    return {
        name: notifier_class(options.type)(name, options, session=session, timeout=timeout)
        for name, options in config.notify.items()
        if options.enabled
    }


__all__ = ["REGISTRY", "Notifier", "build_notifiers", "notifier_class"]
