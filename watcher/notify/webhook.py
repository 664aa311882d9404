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

SIGNATURE_HEADER = "X-Watcher-Signature-256"


def payload(alert: Alert) -> dict[str, Any]:
    item = alert.item
    return {
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
