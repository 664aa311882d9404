"""Discord webhook: one embed per alert; feed text can neither ping nor format.

``allowed_mentions`` with nothing to parse stops every ping (``@everyone``, roles, users);
a zero-width space after each ``@`` keeps them from even looking like mentions, and
Markdown characters and ``<`` are escaped, so a title can neither hide a link
(``[text](url)``) nor write Discord's own ``<@user>``, ``<#channel>`` or ``<t:time>``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from watcher.links import safe_link
from watcher.models import Alert, Digest
from watcher.notify import templates
from watcher.notify.base import digest_heading, iso, more_sources, title_of
from watcher.notify.chat import ChatNotifier
from watcher.notify.options import PostOptions
from watcher.notify.registry import Channel
from watcher.values import Rate

if TYPE_CHECKING:
    import jinja2

_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()#:-])")
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096


def escape(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text).replace("@", "@\u200b")


def _bold(word: str) -> str:
    return f"**{word}**"


def message(alert: Alert, template: jinja2.Template | None = None) -> dict[str, Any]:
    variables = templates.context(alert, _bold, escape, summary_limit=1000)
    description = (template or _default()).render(variables).strip()
    embed: dict[str, Any] = {
        "title": escape(title_of(alert))[:TITLE_LIMIT],
        "description": description[:DESCRIPTION_LIMIT],
        "fields": [
            {"name": "Rule", "value": escape(alert.rule), "inline": True},
            {"name": "Feed", "value": escape(alert.feed_name), "inline": True},
            {"name": "Matched", "value": escape(", ".join(alert.terms)) or "-", "inline": True},
        ],
        "footer": {"text": f"watcher · delivery {alert.delivery_id}"},
    }
    link = safe_link(alert.item.link)
    if link:
        embed["url"] = link
    if alert.item.published:
        embed["timestamp"] = iso(alert.item.published)
    return {"username": "watcher", "embeds": [embed], "allowed_mentions": {"parse": []}}


def digest_message(digest: Digest) -> dict[str, Any]:
    lines = []
    for alert in digest.alerts:
        title = escape(title_of(alert))
        link = safe_link(alert.item.link)
        target = link.replace("(", "%28").replace(")", "%29")
        shown = f"[{title}]({target})" if link else title
        sources = escape(more_sources(alert))
        lines.append(f"• {shown} — {escape(alert.rule)}, {escape(alert.feed_name)}{sources}")
    description, shown_count = "", 0
    for line in lines:
        if len(description) + len(line) + 1 > DESCRIPTION_LIMIT - 40:
            break
        description += line + "\n"
        shown_count += 1
    if shown_count < len(lines):
        description += f"and {len(lines) - shown_count} more"
    embed = {"title": escape(digest_heading(digest)), "description": description}
    return {"username": "watcher", "embeds": [embed], "allowed_mentions": {"parse": []}}


def _default() -> jinja2.Template:
    return templates.load("discord", "discord", escape)


class DiscordOptions(PostOptions):
    """Like Slack's, Discord's webhooks take no ``secret`` and no ``headers``."""

    type: Literal["discord"]
    template: str | None = None  # Jinja2 file for the embed's description


class DiscordNotifier(ChatNotifier):
    options: DiscordOptions
    default_rate = Rate(30, timedelta(minutes=1))  # Discord's limit per webhook
    template_name = "discord"
    escape = staticmethod(escape)

    def render(self, alert: Alert) -> dict[str, Any]:
        return message(alert, self.template)

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        return digest_message(digest)


CHANNEL = Channel(DiscordOptions, DiscordNotifier)
