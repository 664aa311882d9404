"""Slack incoming webhook: a text fallback and blocks, every feed-given string escaped.

Slack reads ``<...>`` as links and mentions (``<!channel>``), so ``&``, ``<`` and ``>`` in
feed text are escaped as Slack requires and a link's ``|`` is percent-encoded.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from watcher.links import safe_link
from watcher.models import Alert, Digest
from watcher.notify import templates
from watcher.notify.base import digest_heading, more_sources, title_of
from watcher.notify.chat import ChatNotifier
from watcher.notify.options import PostOptions
from watcher.notify.registry import Channel
from watcher.values import Rate

if TYPE_CHECKING:
    import jinja2


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bold(word: str) -> str:
    return f"*{word}*"


def _link(url: str, label: str) -> str:
    url = safe_link(url)
    if not url:
        return label
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def message(alert: Alert, template: jinja2.Template | None = None) -> dict[str, Any]:
    title = escape(title_of(alert))
    rule = escape(alert.rule)
    feed = escape(alert.feed_name)
    matched = ", ".join(escape(term) for term in alert.terms)
    published = alert.item.published
    when = published.strftime("%Y-%m-%d %H:%M UTC") if published else "no date"
    variables = templates.context(alert, _bold, escape)
    variables["link_title"] = templates.Safe(_link(alert.item.link, title))
    body = (template or _default()).render(variables).strip()
    return {
        "text": f"[{rule}] {title} ({feed})",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"rule *{rule}* · {feed} · {when} · matched: {matched}",
                    }
                ],
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


DIGEST_ITEMS = 45
"""Alerts listed in a digest message (Slack takes at most 50 blocks)."""


def digest_message(digest: Digest) -> dict[str, Any]:
    heading = escape(digest_heading(digest))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*watcher: {heading}*"}}
    ]
    for alert in digest.alerts[:DIGEST_ITEMS]:
        line = f"• {_link(alert.item.link, escape(title_of(alert)))}"
        line += f" — _{escape(alert.rule)}_, {escape(alert.feed_name)}"
        line += escape(more_sources(alert))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
    hidden = len(digest.alerts) - DIGEST_ITEMS
    if hidden > 0:
        more = f"and {hidden} more: `watcher matches`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": f"watcher: {heading}", "blocks": blocks, "unfurl_links": False}


def _default() -> jinja2.Template:
    return templates.load("slack", "slack", escape)


class SlackOptions(PostOptions):
    """Slack's incoming webhooks take no signature and no headers of ours: ``secret`` and
    ``headers`` are unknown keys, not options silently ignored."""

    type: Literal["slack"]
    template: str | None = None  # Jinja2 file for the message text; relative to the config


class SlackNotifier(ChatNotifier):
    options: SlackOptions
    default_rate = Rate(1, timedelta(seconds=1))  # Slack's limit for incoming webhooks
    template_name = "slack"
    content_type = "application/json; charset=utf-8"
    escape = staticmethod(escape)

    def render(self, alert: Alert) -> dict[str, Any]:
        return message(alert, self.template)

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        return digest_message(digest)


CHANNEL = Channel(SlackOptions, SlackNotifier)
