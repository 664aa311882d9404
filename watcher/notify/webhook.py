"""Generic webhook: the JSON payload of DESIGN.md section 6, signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

from pydantic import Field, SecretStr

from watcher.links import safe_link
from watcher.models import Alert, Digest
from watcher.notify.base import Notifier, excerpt_of, iso, summary_of, title_of
from watcher.notify.options import PostOptions
from watcher.notify.registry import Channel
from watcher.text import one_line, plain

SIGNATURE_HEADER = "X-Watcher-Signature-256"


def payload(alert: Alert) -> dict[str, Any]:
    item = alert.item
    document = {
        "delivery_id": alert.delivery_id,
        "rule": alert.rule,
        "matched": list(alert.terms),
        "highlight": list(alert.words),
        "excerpt": excerpt_of(alert) or None,
        "feed": {"name": alert.feed_name, "url": alert.feed_url},
        "item": {
            "key": item.key,
            "title": title_of(alert),
            "link": safe_link(item.link),
            "summary": summary_of(alert, 2000),
            "author": item.author,
            "published": iso(item.published),
            "tags": list(item.tags),
        },
        "detected_at": iso(alert.detected_at),
    }
    if alert.story is not None:  # every recorded match has one
        document["story"] = story(alert)
    return document


def story(alert: Alert) -> dict[str, Any]:
    """The story the alert opened and its reports so far, the first being the alerted one
    (DESIGN.md section 6)."""
    assert alert.story is not None
    return {
        "id": alert.story.id,
        "reports": [
            {
                "feed": report.feed,
                "title": one_line(plain(report.title)),
                "link": safe_link(report.link),
                "published": iso(report.published),
                "detected_at": iso(report.detected_at),
            }
            for report in alert.story.reports
        ],
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def digest_payload(digest: Digest) -> dict[str, Any]:
    return {
        "digest_id": digest.digest_id,
        "window": {"start": iso(digest.start), "end": iso(digest.end)},
        "alerts": [payload(alert) for alert in digest.alerts],
    }


class WebhookOptions(PostOptions):
    type: Literal["webhook"]
    secret: SecretStr | None = None  # signs the body with HMAC-SHA256
    headers: dict[str, str] = Field(default_factory=dict)


class WebhookNotifier(Notifier):
    options: WebhookOptions

    def send(self, alert: Alert) -> str | None:
        return self._post(payload(alert), alert.delivery_id)

    def send_digest(self, digest: Digest) -> str | None:
        return self._post(digest_payload(digest), digest.digest_id)

    def _post(self, document: dict[str, Any], delivery_id: str) -> str | None:
        body = json.dumps(document, ensure_ascii=False).encode()
        headers = {
            **self.options.headers,
            "Content-Type": "application/json",
            "X-Watcher-Delivery": delivery_id,
        }
        secret = self.options.secret.get_secret_value() if self.options.secret else ""
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        self.post(self.options.url.get_secret_value(), body, headers)
        return None


CHANNEL = Channel(WebhookOptions, WebhookNotifier)
