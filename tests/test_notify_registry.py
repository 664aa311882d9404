"""The notifier registry: a channel is declared once, beside its notifier, and the config
and the daemon take it from there."""

from __future__ import annotations

import json
from typing import Literal

import pytest

import watcher.config
from tests.conftest import rss
from tests.servers import Route
from watcher.cycle import run_once
from watcher.errors import ConfigError
from watcher.models import Alert, Digest
from watcher.notify import registry
from watcher.notify.base import Notifier, title_of
from watcher.notify.options import NotifierOptions, PostOptions
from watcher.notify.registry import Channel

BUILTIN = ["apprise", "discord", "email", "slack", "webhook"]


class PagerOptions(PostOptions):
    type: Literal["pager"]
    severity: Literal["low", "high"] = "low"


class PagerNotifier(Notifier):
    """A channel written outside the package: the whole of it is this module's code."""

    options: PagerOptions

    def send(self, alert: Alert) -> str | None:
        return self._page([title_of(alert)])

    def send_digest(self, digest: Digest) -> str | None:
        return self._page([title_of(alert) for alert in digest.alerts])

    def _page(self, titles: list[str]) -> None:
        body = json.dumps({"severity": self.options.severity, "titles": titles}).encode()
        self.post(self.options.url.get_secret_value(), body, {"Content-Type": "application/json"})
        return None


@pytest.fixture
def pager():
    channel = registry.register(Channel(PagerOptions, PagerNotifier))
    yield channel
    registry.unregister(channel.type)


def test_a_channel_registered_in_one_place_is_configured_and_sent(
    pager, make_config, feed_server, receiver
):
    feed_server.routes["/world.xml"] = Route(
        rss({"guid": "1", "title": "Istanbul talks resume", "link": "https://news.example.org/1"})
    )
    config = make_config(
        feeds=[{"url": feed_server.url("/world.xml"), "name": "world", "backfill": True}],
        rules=[{"name": "talks", "query": "Istanbul", "notify": ["duty"]}],
        notify={"duty": {"type": "pager", "url": receiver.url("/page"), "severity": "high"}},
    )
    assert isinstance(config.notify["duty"], PagerOptions)

    report = run_once(config)

    assert report.delivery.sent == 1
    assert receiver.bodies("/page") == [{"severity": "high", "titles": ["Istanbul talks resume"]}]


def test_a_registered_channel_has_the_config_errors_of_the_others(pager):
    text = """notify:
  duty: {type: pager, url: "https://pager.example.org/x", sevrity: high}
  desk: {type: pagr, url: "https://pager.example.org/y"}
  chat: {type: slack, url: "https://hooks.example.org/z", severity: high}
"""
    with pytest.raises(ConfigError) as caught:
        watcher.config.loads(text, "watch.yaml", env={})
    assert caught.value.problems == [
        "watch.yaml:2: notify.duty.sevrity: unknown key 'sevrity' for a pager notifier "
        "(did you mean 'severity'?)",
        "watch.yaml:3: notify.desk.type: unknown notifier type 'pagr' "
        f"(known: {', '.join(sorted([*BUILTIN, 'pager']))})",
        "watch.yaml:4: notify.chat.severity: unknown key 'severity' for a slack notifier "
        "(only pager notifiers take it)",
    ]


def test_an_unregistered_channel_is_unknown_again(pager):
    registry.unregister("pager")
    try:
        with pytest.raises(ConfigError, match="unknown notifier type 'pager'"):
            watcher.config.loads(
                'notify:\n  duty: {type: pager, url: "https://p.example.org/x"}\n', "w.yaml", env={}
            )
    finally:
        registry.register(pager)


def test_each_builtin_channel_is_declared_beside_its_notifier():
    assert list(registry.types()) == BUILTIN
    for channel in registry.channels():
        assert channel.options.__module__ == channel.notifier.__module__
        assert channel.options.__module__ == f"watcher.notify.{channel.type}"
        assert registry.channel(channel.type) is channel
    assert not [
        name
        for name, value in vars(watcher.config).items()
        if isinstance(value, type)
        and issubclass(value, NotifierOptions)
        and value is not NotifierOptions
    ]


def test_a_type_is_registered_once_and_named_by_its_options_literal(pager):
    with pytest.raises(ValueError, match="'pager' is registered already"):
        registry.register(Channel(PagerOptions, PagerNotifier))
    with pytest.raises(ValueError, match="'slack' is registered already"):
        registry.register(Channel(registry.channel("slack").options, PagerNotifier))

    class Untyped(PostOptions):
        pass

    with pytest.raises(TypeError, match=r"Untyped.type must be Literal\['<its type>'\]"):
        Channel(Untyped, PagerNotifier)
