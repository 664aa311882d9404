"""What the pages and the JSON API read, handed to every view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from watcher.config import Config
from watcher.health import Check
from watcher.state import Reports


def _now() -> datetime:
    return datetime.now(UTC)


def _healthy() -> str | None:
    return None


def _no_metrics() -> bytes:
    return b""


@dataclass(frozen=True)
class Site:
    """The state, the config running now (a reload swaps it: read it once per request),
    and the daemon's health check and metrics."""

    store: Reports
    config: Callable[[], Config]
    check: Check = _healthy
    metrics: Callable[[], bytes] = _no_metrics
    clock: Callable[[], datetime] = field(default=_now)
