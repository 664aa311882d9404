"""Notifiers, one module per channel, found by their YAML ``type`` (see ``registry``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from watcher.notify import registry
from watcher.notify.base import Notifier, adapter_for

if TYPE_CHECKING:
    from watcher.config import Config


def build_notifiers(config: Config, session: requests.Session) -> dict[str, Notifier]:
    """The enabled notifiers of a config, by name."""
    adapter_for(session)  # mounted now, before the session is shared between threads
    timeout = config.settings.timeout.total_seconds()
    return {
        name: registry.channel(options.type).notifier(
            name, options, session=session, timeout=timeout
        )
        for name, options in config.notify.items()
        if options.enabled
    }


__all__ = ["Notifier", "build_notifiers", "registry"]
