"""The errors a user can cause. Each message is one line written for a person."""

from __future__ import annotations

from typing import Any


class WatcherError(Exception):
    """Root of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The config file is invalid; ``problems`` holds every ``file:line: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class QueryError(WatcherError):
    """A rule query does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}")


class FetchError(WatcherError):
    """A feed could not be fetched, or what it served cannot be used.

    ``transient`` says whether the same request may well succeed later as it is (a timeout,
    a refused connection, a 5xx, a 429) rather than needing someone to fix the feed or its
    URL (a 404, a redirect refused, a body too large). ``retry_after`` is how long the server
    asked us to wait, in seconds; ``url`` is the URL that failed, after redirects.
    """

    def __init__(
        self,
        feed: str,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.feed = feed
        self.reason = message
        self.url = url
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(f"feed {feed}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        """Rebuilt from its parts when it crosses a process (parsing runs in a pool)."""
        parts = {
            "url": self.url,
            "status": self.status,
            "transient": self.transient,
            "retry_after": self.retry_after,
        }
        return (_fetch_error, (type(self), self.feed, self.reason, parts))


class ParseError(FetchError):
    """What the feed served is not a feed that can be read (HTML, broken XML, bad JSON)."""


def _fetch_error(
    kind: type[FetchError], feed: str, message: str, parts: dict[str, Any]
) -> FetchError:
    return kind(feed, message, **parts)


class OpmlError(WatcherError):
    """The OPML file cannot be read."""


class DeliveryError(WatcherError):
    """A notifier could not deliver; ``retryable`` says whether trying again may help, and
    ``retry_after`` how long the receiver asked us to wait (seconds), if it did."""

    def __init__(
        self,
        notifier: str,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.retryable = retryable
        self.retry_after = retry_after
        self.reason = message
        super().__init__(f"notifier {notifier}: {message}")


class StateError(WatcherError):
    """The state database cannot be used (locked by another daemon, unwritable, ...)."""
