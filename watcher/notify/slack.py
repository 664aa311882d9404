"""Slack incoming webhook: a text fallback and blocks, every feed-given string escaped.

Slack reads ``<...>`` as links and mentions (``<!channel>``), so ``&``, ``<`` and ``>`` in
feed text are escaped as Slack requires and a link's ``|`` is percent-encoded.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from watcher.config import Rate
from watcher.links import safe_link
from watcher.models import Alert
from watcher.notify.base import Notifier, summary_of, title_of
from watcher.text import highlight


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bold(word: str) -> str:
    return f"*{word}*"


def _link(url: str, label: str) -> str:
    url = safe_link(url)
    if not url:
        return label
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def message(alert: Alert) -> dict[str, Any]:
    title = escape(title_of(alert))
    rule = escape(alert.rule)
    feed = escape(alert.feed_name)
    matched = ", ".join(escape(term) for term in alert.terms)
    published = alert.item.published
    when = published.strftime("%Y-%m-%d %H:%M UTC") if published else "no date"
    summary = highlight(summary_of(alert), alert.words, _bold, escape)
    body = f"*{_link(alert.item.link, title)}*" + (f"\n{summary}" if summary else "")
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


class SlackNotifier(Notifier):
    type = "slack"
    default_rate = Rate(1, timedelta(seconds=1))  # Slack's limit for incoming webhooks

    def send(self, alert: Alert) -> str | None:
        body = json.dumps(message(alert), ensure_ascii=False).encode()
        self.post(
            self.options.url.get_secret_value(),
            body,
            {"Content-Type": "application/json; charset=utf-8"},
        )
        return None
