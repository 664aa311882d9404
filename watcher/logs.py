"""Log output: one line per event, as text or as JSON for log shippers, with the URLs that
libraries log hidden."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from watcher.text import one_line

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
LIBRARIES = ("urllib3", "requests")
"""Loggers whose records may carry a request's URL (urllib3's "Failed to parse headers
(url=...)" warning with a traceback): a notifier's URL is its secret."""
_SECRETS = re.compile(
    r"url=[^\s,)]+|[a-z][a-z0-9+.-]*://[^\s'\"<>)]+|unparsed data: .*", re.IGNORECASE | re.DOTALL
)
"""``url=...``, any URL, and a header block urllib3 could not parse (it may echo the path)."""


class RedactUrls(logging.Filter):
    """Hides every URL in the records of ``LIBRARIES`` and drops their tracebacks (whose
    messages repeat the URL); watcher's own records never hold a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] in LIBRARIES and not getattr(record, "redacted", False):
            message = _SECRETS.sub(_hide, record.getMessage())
            if record.exc_info and record.exc_info[0] is not None:
                message += f" ({record.exc_info[0].__name__})"
            record.msg = message
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            record.redacted = True
        return True


def _hide(found: re.Match[str]) -> str:
    text = found.group(0)
    if text.lower().startswith("url="):
        return "url=***"
    if text.lower().startswith("unparsed data:"):
        return "unparsed data: ***"
    return "***"


_REDACT = RedactUrls()


class TextFormatter(logging.Formatter):
    """One line per event: a feed-given string in a message (a link, a redirect's target,
    a server's reason phrase) cannot break the line or drive the terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": one_line(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(_REDACT)  # the records of any library logger, at the output
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Apprise logs the URLs it posts to, and an Apprise URL holds its service's token
    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    # psycopg's pool warns at every failed connection attempt; while the database is away,
    # watcher itself says so once a minute
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    redact_library_loggers()


def redact_library_loggers() -> None:
    """Redact at the source too, before any handler (a test's, another library's) sees a
    record: a logger's filters apply only to its own records, so each module's logger of
    ``LIBRARIES`` gets the filter."""
    known = logging.Logger.manager.loggerDict
    names = {name for name in known if name.partition(".")[0] in LIBRARIES}
    names.update(
        f"urllib3.{module}"
        for module in ("connectionpool", "connection", "response", "poolmanager", "util.retry")
    )
    for name in sorted(names | set(LIBRARIES)):
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
