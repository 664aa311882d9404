"""Message templates (Jinja2): defaults shipped in ``watcher/templates``, overridable per
notifier with ``template: path``.

Every value a template prints is escaped for its channel (HTML for email, Slack's and
Discord's own rules for theirs) unless it is already markup that watcher built, such as the
summary with the matched words marked: a template cannot forget to escape feed text.

Variables: ``rule``, ``matched`` (the rule's terms found), ``feed``, ``feed_url``,
``delivery_id``, ``detected_at``, ``title``, ``link`` (http(s) only, else empty),
``summary`` (plain text), ``author``, ``tags``, ``published`` (a datetime or None),
``published_text``, ``title_marked`` and ``summary_marked`` (matched words marked),
``excerpt`` and ``excerpt_marked`` (the sentence of the content around the matched words,
empty when the content holds none: why a full_text feed's item alerted), ``also_reported_by``
(the other feeds that reported the story so far: a list, empty when none did), and for Slack
``link_title`` (the title linked to the item).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from watcher.links import safe_link
from watcher.models import Alert
from watcher.notify.base import excerpt_of, summary_of, title_of
from watcher.text import highlight

if TYPE_CHECKING:
    import jinja2

Escape = Callable[[str], str]


class Safe(str):
    """Text already escaped for its channel: printed as it is."""


def _finalizer(escape: Escape) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, Safe | Markup):
            return value
        return escape(str(value))

    return finalize


@functools.cache
def _environment(channel: str, escape: Escape | None) -> jinja2.Environment:
    import jinja2  # at the first template: a cycle that sends nothing spares its start-up

    options: dict[str, Any] = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    if channel == "html":
        return jinja2.Environment(autoescape=True, **options)
    if escape is not None:
        options["finalize"] = _finalizer(escape)
    return jinja2.Environment(autoescape=False, **options)


def load(
    name: str, channel: str, escape: Escape | None = None, path: str | None = None
) -> jinja2.Template:
    """The template ``path``, or the default one called ``name``; ``channel`` is ``html``
    (autoescaped), or text escaped with ``escape`` (none for plain text). A file is read
    anew at each call (a reload takes an edited template); its compilation is kept."""
    source = _default(name) if path is None else read(path)
    return _compiled(source, channel, escape)


@functools.cache
def _default(name: str) -> str:
    return files("watcher.templates").joinpath(f"{name}.j2").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=128)
def _compiled(source: str, channel: str, escape: Escape | None) -> jinja2.Template:
    return _environment(channel, escape).from_string(source)


def read(path: str) -> str:
    """A template file's text; the config checked that it exists and compiles."""
    return Path(path).read_text(encoding="utf-8")


def context(
    alert: Alert,
    mark: Callable[[str], str],
    escape: Escape,
    safe: Callable[[str], str] = Safe,
    summary_limit: int = 300,
) -> dict[str, Any]:
    """The variables of a template for one alert; ``mark`` marks a matched word (already
    escaped), ``safe`` wraps what is already escaped (``Markup`` for HTML)."""
    title, summary = title_of(alert), summary_of(alert, summary_limit)
    found = excerpt_of(alert)
    published = alert.item.published
    return {
        "rule": alert.rule,
        "matched": list(alert.terms),
        "feed": alert.feed_name,
        "feed_url": alert.feed_url,
        "delivery_id": alert.delivery_id,
        "detected_at": alert.detected_at,
        "title": title,
        "link": safe_link(alert.item.link),
        "summary": summary,
        "author": alert.item.author,
        "tags": list(alert.item.tags),
        "published": published,
        "published_text": published.strftime("%Y-%m-%d %H:%M UTC") if published else "",
        "title_marked": safe(highlight(title, alert.words, mark, escape)),
        "summary_marked": safe(highlight(summary, alert.words, mark, escape)),
        "excerpt": found,
        "excerpt_marked": safe(highlight(found, alert.words, mark, escape)),
        "also_reported_by": list(alert.also_reported_by),
    }
