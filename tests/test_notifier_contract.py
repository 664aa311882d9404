"""One contract for every notifier in the registry, against real receivers on 127.0.0.1.

What an answer means: accepted (2xx, SMTP 250) is sent; a permanent refusal (other 4xx,
SMTP 5xx) is dead at once; a temporary one (5xx, 408, 429, SMTP 4xx), a receiver that does
not answer in time and one that is down are retried, after the ``Retry-After`` it asked for.
Feed text reaches each channel as text, never as markup; a digest is one message holding
every alert.

The suite is parametrised by the registry: a channel registered without an adapter here
fails it (``test_every_registered_channel_has_an_adapter`` and each of its cases).
"""

from __future__ import annotations

import email
import html
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any, ClassVar

import pytest
import yaml

from tests.servers import Receiver, SmtpServer, free_port
from watcher.config import RetrySettings, loads
from watcher.deliver import deliver_due
from watcher.errors import DeliveryError
from watcher.http import new_session
from watcher.models import Alert, Digest, Entry
from watcher.notify import Notifier, build_notifiers, registry
from watcher.rules import Match
from watcher.state import NewItem

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TIMEOUT = 0.5

HOSTILE = {
    "title": "Peskov <!channel> &lt;http://evil.example|click&gt; @everyone @here "
    "<script>alert(1)</script> [x](https://evil.example) *statement*",
    "summary": "<p><@U123> &lt;!everyone&gt; <#C1|x> Peskov "
    "<a href='javascript:alert(1)'>x</a> &lt;script&gt;alert(2)&lt;/script&gt;</p>",
    "link": "https://news.example.org/a?b=<c>|d",
}
"""Feed text that would be markup in some channel: Slack's mentions and links, Discord's
mentions and masked links, HTML; as the feed gave it (``<!channel>``) or with entities
(``&lt;!everyone&gt;``), as a feed that escapes its HTML gives it."""
CODE = {"title": "std::vector<int> leaks", "summary": "<p>std::vector&lt;int&gt; in <b>C++</b></p>"}
"""Angle brackets that are text, not markup: they reach every channel."""
HOSTILE_TITLE = (
    "Peskov <!channel> <http://evil.example|click> @everyone @here [x](https://evil.example) "
    "*statement*"
)
"""The title as text: what every channel must show, each in its own escaping."""


def alert(number: int = 1, **item: Any) -> Alert:
    fields = {
        "key": f"k{number}",
        "title": f"Istanbul talks, day {number}",
        "link": f"https://news.example.org/{number}",
        "summary": "Peskov confirmed the talks.",
        "published": datetime(2026, 11, 24, 10, tzinfo=UTC),
        **item,
    }
    return Alert(
        delivery_id=f"d-{number}",
        rule="talks",
        terms=("Istanbul talks",),
        feed_name="world",
        feed_url="https://example.org/rss",
        item=Entry(**fields),
        detected_at=NOW,
        words=("istanbul", "talks"),
    )


class Adapter:
    """How the suite drives one channel: where it sends, how its receiver answers, and
    what the receiver took in."""

    kind: ClassVar[str]
    tells_permanent: ClassVar[bool] = True
    """The channel tells a permanent refusal from a temporary one."""
    sees_retry_after: ClassVar[bool] = True
    permanent: ClassVar[list[Any]]
    temporary: ClassVar[list[Any]]

    def __init__(self, receiver: Receiver, smtp: SmtpServer) -> None:
        self.receiver = receiver
        self.smtp = smtp

    def options(self, port: int | None = None) -> dict[str, Any]:
        """The notifier's options; ``port`` a loopback port to send to instead."""
        raise NotImplementedError

    def answer(self, reply: Any, wait: int | None = None) -> None:
        """The receiver's next answer; ``wait`` seconds asked for before a retry."""
        status = reply if wait is None else (reply, {"Retry-After": str(wait)})
        self.receiver.planned[:] = [status]

    def describes(self, reply: Any) -> str:
        """What the delivery error says of that answer."""
        return f"HTTP {reply}"

    def received(self) -> list[Any]:
        """The messages taken in, as the receiver's client reads them."""
        return [request.json() for request in self.receiver.requests]

    def text(self, message: Any) -> str:
        return json.dumps(message, ensure_ascii=False)

    def check_hostile(self, message: Any) -> None:
        raise NotImplementedError

    def check_code(self, message: Any) -> None:
        """``CODE``'s angle brackets are shown, escaped for the channel."""
        raise NotImplementedError


class HttpAdapter(Adapter):
    permanent: ClassVar[list[Any]] = [400, 403, 404, 410]
    temporary: ClassVar[list[Any]] = [500, 502, 503, 408, 429]
    path: ClassVar[str]

    def options(self, port: int | None = None) -> dict[str, Any]:
        base = self.receiver.base if port is None else f"http://127.0.0.1:{port}"
        return {"type": self.kind, "url": f"{base}/{self.path}"}


class WebhookAdapter(HttpAdapter):
    kind = "webhook"
    path = "hook"

    def check_hostile(self, message: Any) -> None:
        # JSON carries data: the text as it is, for the receiver to escape where it shows it
        assert message["item"]["title"] == HOSTILE_TITLE
        assert message["item"]["summary"].startswith("<@U123> <!everyone> <#C1|x> Peskov x")
        assert message["item"]["link"] == HOSTILE["link"]
        assert "<script>alert(1)" not in self.text(message)

    def check_code(self, message: Any) -> None:
        assert message["item"]["title"] == CODE["title"]
        assert message["item"]["summary"] == "std::vector<int> in C++"


class SlackAdapter(HttpAdapter):
    kind = "slack"
    path = "services/T0/B0/secret"

    def check_hostile(self, message: Any) -> None:
        text = self.text(message)
        for markup in ("<!channel>", "<!everyone>", "<@U123>", "<#C1|", "<http://evil", "<script"):
            assert markup not in text
        shown = "Peskov &lt;!channel&gt; &lt;http://evil.example|click&gt; @everyone"
        assert message["text"].startswith(f"[talks] {shown}")
        section = message["blocks"][0]["text"]["text"]
        assert section.startswith("*<https://news.example.org/a?b=&lt;c&gt;%7Cd|")
        assert f"|{shown}" in section
        assert "&lt;@U123&gt; &lt;!everyone&gt; &lt;#C1|x&gt; *Peskov*" in section

    def check_code(self, message: Any) -> None:
        assert message["text"] == "[talks] std::vector&lt;int&gt; leaks (world)"
        assert "std::*vector*&lt;int&gt; in C++" in message["blocks"][0]["text"]["text"]


class DiscordAdapter(HttpAdapter):
    kind = "discord"
    path = "api/webhooks/1/secret"

    def check_hostile(self, message: Any) -> None:
        assert message["allowed_mentions"] == {"parse": []}
        (embed,) = message["embeds"]
        text = self.text(embed)
        for markup in ("@everyone", "@here", "<@U123>", "[x](https"):
            assert markup not in text
        assert embed["title"].startswith("Peskov \\<!channel\\> \\<http\\:")
        assert "@\u200beveryone @\u200bhere \\[x\\]\\(https\\:" in embed["title"]
        assert "\\*statement\\*" in embed["title"]
        assert embed["url"] == HOSTILE["link"]
        assert "**Peskov**" in embed["description"]
        assert "\\<@\u200bU123\\> \\<!everyone\\> \\<\\#C1\\|x\\>" in embed["description"]

    def check_code(self, message: Any) -> None:
        (embed,) = message["embeds"]
        assert embed["title"] == "std\\:\\:vector\\<int\\> leaks"
        assert "std\\:\\:**vector**\\<int\\> in C++" in embed["description"]


class EmailAdapter(Adapter):
    kind = "email"
    sees_retry_after = False  # SMTP has no Retry-After
    permanent: ClassVar[list[Any]] = ["554 5.7.1 Rejected", "550 5.1.1 No such mailbox"]
    temporary: ClassVar[list[Any]] = ["451 4.3.0 Try again later", "452 4.3.1 Out of space"]

    def options(self, port: int | None = None) -> dict[str, Any]:
        return {
            "type": "email",
            "to": ["desk@example.org"],
            "from": "watcher@example.org",
            "host": "127.0.0.1",
            "port": self.smtp.port if port is None else port,
            "security": "none",
        }

    def answer(self, reply: Any, wait: int | None = None) -> None:
        self.smtp.replies[:] = [reply]

    def describes(self, reply: Any) -> str:
        return f"SMTP {reply[:3]}"

    def received(self) -> list[Any]:
        return [
            email.message_from_bytes(envelope.content, policy=policy.default)
            for envelope in self.smtp.messages
        ]

    def text(self, message: Any) -> str:
        parts = [message.get_body((kind,)) for kind in ("plain", "html")]
        return "\n".join([str(message["Subject"]), *(part.get_content() for part in parts)])

    def check_hostile(self, message: Any) -> None:
        assert message["Subject"] == f"[watcher] talks: {HOSTILE_TITLE}"
        html = message.get_body(("html",)).get_content()
        for markup in ("<script", "javascript:", "<!channel>", "<@U123>"):
            assert markup not in html
        assert "<mark>Peskov</mark> &lt;!channel&gt; &lt;http://evil.example|click&gt;" in html
        assert "&lt;@U123&gt; &lt;!everyone&gt;" in html
        plain = message.get_body(("plain",)).get_content()
        assert plain.startswith(HOSTILE_TITLE)  # plain text is text: nothing to escape

    def check_code(self, message: Any) -> None:
        assert message["Subject"] == "[watcher] talks: std::vector<int> leaks"
        assert "std::vector<int> in C++" in message.get_body(("plain",)).get_content()
        html_text = message.get_body(("html",)).get_content()
        assert "std::<mark>vector</mark>&lt;int&gt; leaks" in html_text
        assert "std::<mark>vector</mark>&lt;int&gt; in C++" in html_text


class AppriseAdapter(HttpAdapter):
    kind = "apprise"
    tells_permanent = False  # Apprise says whether it delivered, not why not
    sees_retry_after = False
    path = "push"

    def options(self, port: int | None = None) -> dict[str, Any]:
        host = self.receiver.base.removeprefix("http://") if port is None else f"127.0.0.1:{port}"
        # format=html: a service that takes HTML (as Telegram does), so escaping shows
        return {"type": "apprise", "url": f"json://{host}/{self.path}?format=html"}

    def describes(self, reply: Any) -> str:
        return "Apprise could not deliver"

    def text(self, message: Any) -> str:
        shown = html.unescape(message["message"]).replace("\xa0", " ")
        return f"{message['title']}\n{shown}"

    def check_hostile(self, message: Any) -> None:
        assert message["title"] == f"[watcher] talks: {HOSTILE_TITLE}"  # JSON's own field
        body = message["message"]
        assert "<" not in body.replace("<br/>", "")  # Apprise's line breaks
        assert "&lt;@U123&gt;&nbsp;&lt;!everyone&gt;" in body

    def check_code(self, message: Any) -> None:
        assert message["title"] == "[watcher] talks: std::vector<int> leaks"
        assert "std::vector&lt;int&gt;&nbsp;in&nbsp;C++" in message["message"]


ADAPTERS: dict[str, type[Adapter]] = {
    adapter.kind: adapter
    for adapter in (WebhookAdapter, SlackAdapter, DiscordAdapter, EmailAdapter, AppriseAdapter)
}
KINDS = registry.types()


def test_every_registered_channel_has_an_adapter():
    assert sorted(ADAPTERS) == sorted(KINDS), "add an Adapter for each new channel"


@pytest.fixture(params=KINDS)
def channel(request, receiver, smtp_server) -> Adapter:
    kind = request.param
    if kind not in ADAPTERS:
        pytest.fail(f"no contract adapter for the notifier type {kind!r}")
    return ADAPTERS[kind](receiver, smtp_server)


@pytest.fixture
def silent() -> Iterator[int]:
    """A loopback port that takes connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def notifier(channel: Adapter, port: int | None = None, **options: Any) -> Notifier:
    section = {"n": {**channel.options(port), "timeout": f"{TIMEOUT}s", **options}}
    config = loads(yaml.safe_dump({"notify": section}), "t.yaml", env={})
    return build_notifiers(config, new_session("watcher-test"))["n"]


def refused(channel: Adapter, send: Notifier, reply: Any, wait: int | None = None):
    channel.answer(reply, wait)
    with pytest.raises(DeliveryError) as caught:
        send.send(alert())
    assert str(caught.value).startswith("notifier n: ")
    assert channel.describes(reply) in str(caught.value)
    return caught.value


def test_an_accepted_message_is_sent(channel):
    assert notifier(channel).send(alert()) is None
    (message,) = channel.received()
    assert "Istanbul talks, day 1" in channel.text(message)


def test_a_permanent_refusal_is_not_retried(channel):
    send = notifier(channel)
    for reply in channel.permanent:
        error = refused(channel, send, reply)
        assert error.retryable is not channel.tells_permanent, reply
    assert channel.received() == []


def test_a_temporary_refusal_is_retried(channel):
    send = notifier(channel)
    for reply in channel.temporary:
        error = refused(channel, send, reply)
        assert error.retryable, reply
        assert error.retry_after is None
    assert channel.received() == []


def test_a_receiver_that_does_not_answer_in_time_is_retried(channel, silent):
    with pytest.raises(DeliveryError) as caught:
        notifier(channel, silent).send(alert())
    assert caught.value.retryable


def test_a_receiver_that_is_down_is_retried(channel):
    with pytest.raises(DeliveryError) as caught:
        notifier(channel, free_port()).send(alert())
    assert caught.value.retryable


def test_the_wait_a_receiver_asks_for_is_kept(channel):
    send = notifier(channel)
    for reply in channel.temporary:
        error = refused(channel, send, reply, wait=120)
        assert error.retryable
        assert error.retry_after == (120 if channel.sees_retry_after else None), reply


def test_feed_text_reaches_the_channel_as_text_not_markup(channel):
    hostile = replace(alert(**HOSTILE), words=("peskov",))
    notifier(channel).send(hostile)
    (message,) = channel.received()
    channel.check_hostile(message)


def test_angle_brackets_that_are_not_html_are_shown_not_dropped(channel):
    notifier(channel).send(replace(alert(**CODE), words=("vector",)))
    (message,) = channel.received()
    channel.check_code(message)


def test_a_digest_is_one_message_with_every_alert(channel):
    alerts = tuple(alert(number) for number in (1, 2, 3))
    digest = Digest("digest-1", NOW, NOW + timedelta(hours=1), alerts)
    assert notifier(channel, digest="1h").send_digest(digest) is None
    (message,) = channel.received()
    text = channel.text(message)
    for number in (1, 2, 3):
        assert f"Istanbul talks, day {number}" in text


@pytest.mark.parametrize(
    ("answer", "counts"),
    [("accepted", {"sent": 1}), ("permanent", {"dead": 1}), ("temporary", {"pending": 1})],
)
def test_the_outbox_records_what_the_answer_means(channel, db, answer, counts):
    db.ingest(
        "world",
        "https://example.org/rss",
        etag=None,
        last_modified=None,
        present=["k1"],
        new_items=[NewItem(Entry("k1", title="Istanbul talks"), (Match("talks", ("x",), ("n",)),))],
        now=NOW,
    )
    if answer != "accepted":
        channel.answer(getattr(channel, answer)[0])
    if answer == "permanent" and not channel.tells_permanent:
        counts = {"pending": 1}
    deliver_due(db, {"n": notifier(channel)}, RetrySettings(), NOW)
    assert db.delivery_counts() == counts
