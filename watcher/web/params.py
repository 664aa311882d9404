"""The query parameters of the pages and the JSON API, read and checked once: a bad value is
a ``BadParameter`` that a page shows beside its form and the API answers with a 400."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from werkzeug.wrappers import Request

from watcher.config import parse_duration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MOST = 1000
"""Rows a listing gives at most at once."""


class BadParameter(ValueError):
    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


def text(request: Request, name: str) -> str:
    return request.args.get(name, "").strip()


def since(request: Request, default: str, now: datetime) -> tuple[str, datetime]:
    """The ``since`` duration as given (or ``default``), and the time it goes back to."""
    given = text(request, "since") or default
    try:
        return given, now - parse_duration(given)
    except ValueError as exc:
        raise BadParameter("since", str(exc)) from None
    except OverflowError:
        return given, EPOCH


def limit(request: Request, default: int = 100) -> int:
    given = text(request, "limit")
    if not given:
        return default
    if not given.isdigit() or not 1 <= int(given) <= MOST:
        raise BadParameter("limit", f"expected a number from 1 to {MOST}")
    return int(given)


def choice(request: Request, name: str, choices: Collection[str]) -> str | None:
    """One of ``choices``, or None when not given."""
    given = text(request, name)
    if not given:
        return None
    if given not in choices:
        raise BadParameter(name, f"expected one of {', '.join(choices)}")
    return given


def flag(request: Request, name: str) -> bool:
    return text(request, name).lower() in ("1", "true", "yes", "on")
