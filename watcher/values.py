"""The values a config holds (durations, rates, http(s) URLs) and the frozen model every
section of it is made of.

Shared by ``config.py`` and each notifier's options (which live beside their notifier in
``notify/``), so that neither imports the other's module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict

from watcher import urls

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_PERIODS |= {"h": 3600, "hour": 3600}


def parse_duration(value: object) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if not found:
            raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 5m, 2h, 1d)")
        seconds = float(found[1]) * _UNITS[found[2] or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Rate:
    """At most ``count`` messages per ``period``."""

    count: int
    period: timedelta


def parse_rate(value: object) -> Rate:
    if isinstance(value, Rate):
        return value
    found = _RATE.match(str(value))
    if not found or int(found[1]) < 1:
        raise ValueError(f"invalid rate {value!r} (use e.g. 1/s, 20/min)")
    return Rate(int(found[1]), timedelta(seconds=_RATE_PERIODS[found[2]]))


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
RateField = Annotated[Rate, BeforeValidator(parse_rate)]


def http_url(value: str, *, allow_empty: bool = False) -> str:
    """An http(s) URL that watcher can request. The message never quotes the URL: a
    notifier's is a secret. Credentials (``user:password@``) are allowed: the URL is the
    user's own."""
    if allow_empty and value == "":
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    problem = urls.problem(value)
    if problem:
        raise ValueError(f"invalid URL: {problem}")
    return value


SECTION = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
"""A section of the config: unknown keys are errors, and it never changes once read."""


class Model(BaseModel):
    model_config = SECTION
