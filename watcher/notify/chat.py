"""What chat services fed through a webhook URL share (Slack, Discord): a JSON document per
message, built from a template that escapes for the service."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from watcher.models import Alert, Digest
from watcher.notify import templates
from watcher.notify.base import Notifier


class ChatNotifier(Notifier):
    template_name: ClassVar[str]
    content_type: ClassVar[str] = "application/json"

    def __init__(self, name: str, options: Any, **shared: Any) -> None:
        super().__init__(name, options, **shared)
        self.template = templates.load(
            self.template_name, self.template_name, self.escape, options.template
        )

    @staticmethod
    def escape(text: str) -> str:
        raise NotImplementedError

    def render(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, alert: Alert) -> str | None:
        return self._post(self.render(alert))

    def send_digest(self, digest: Digest) -> str | None:
        return self._post(self.render_digest(digest))

    def _post(self, document: dict[str, Any]) -> str | None:
        body = json.dumps(document, ensure_ascii=False).encode()
        self.post(self.options.url.get_secret_value(), body, {"Content-Type": self.content_type})
        return None
