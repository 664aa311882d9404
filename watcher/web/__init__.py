"""The web pages and the JSON API on ``settings.listen``, beside /healthz and /metrics
(DESIGN.md section 9): ``app`` answers requests, ``server`` serves them."""

from __future__ import annotations

from watcher.web.access import is_loopback
from watcher.web.app import WebApp
from watcher.web.server import WebServer
from watcher.web.site import Site

__all__ = ["Site", "WebApp", "WebServer", "is_loopback"]
