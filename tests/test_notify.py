from __future__ import annotations

import email
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime
from email import policy

import pytest
import requests
import responses

from watcher.config import loads
from watcher.errors import DeliveryError
from watcher.http import new_session
from watcher.models import Alert, Entry
from watcher.notify import build_notifiers
from watcher.notify.base import redact, secret_parts
from watcher.notify.email import build, subject
from watcher.notify.slack import escape, message
from watcher.notify.webhook import payload

HOOK = "https://hooks.example.org/T000/secret-token"
SLACK = "https://hooks.slack.com/services/T0/B0/secret"


def alert(**item: object) -> Alert:
    fields = {
        "key": "k1",
        "title": "Istanbul talks <b>resume</b>",
        "link": "https://news.example.org/1",
        "summary": "<p>Peskov &amp; others</p>",
        "author": "Desk",
        "tags": ("Russia",),
        "published": datetime(2026, 11, 24, 10, tzinfo=UTC),
    }
    fields.update(item)
    return Alert(
        delivery_id="d-123",
        rule="talks",
        terms=("Istanbul talks",),
        feed_name="world",
        feed_url="https://example.org/rss",
        item=Entry(**fields),  # type: ignore[arg-type]
        detected_at=datetime(2026, 11, 24, 10, 5, tzinfo=UTC),
        words=("istanbul", "talks"),
    )


def notifiers(smtp_port: int = 25, login: str = ""):
    config = loads(
        f"""
notify:
  hook: {{type: webhook, url: "{HOOK}", secret: s3cret, headers: {{X-Team: desk}}}}
  slack: {{type: slack, url: "{SLACK}"}}
  mail:
    type: email
    to: [desk@example.org, chief@example.org]
    from: "watcher <watcher@example.org>"
    host: 127.0.0.1
    port: {smtp_port}
    security: none
    timeout: 5s
{login}""",
        "t.yaml",
        env={},
    )
    return build_notifiers(config, new_session("watcher-test"))


def test_webhook_payload_shape():
    assert payload(alert()) == {
        "delivery_id": "d-123",
        "rule": "talks",
        "matched": ["Istanbul talks"],
        "highlight": ["istanbul", "talks"],
        "excerpt": None,
        "feed": {"name": "world", "url": "https://example.org/rss"},
        "item": {
            "key": "k1",
            "title": "Istanbul talks resume",
            "link": "https://news.example.org/1",
            "summary": "Peskov & others",
            "author": "Desk",
            "published": "2026-11-24T10:00:00Z",
            "tags": ["Russia"],
        },
        "detected_at": "2026-11-24T10:05:00Z",
    }


@responses.activate
def test_webhook_headers_and_hmac_signature():
    responses.post(HOOK, status=204)
    notifiers()["hook"].send(alert())
    request = responses.calls[0].request
    body = request.body
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert request.headers["X-Watcher-Signature-256"] == expected
    assert request.headers["X-Watcher-Delivery"] == "d-123"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "watcher-test"
    assert request.headers["X-Team"] == "desk"
    assert json.loads(body)["delivery_id"] == "d-123"


@responses.activate
def test_network_errors_never_reveal_the_url():
    responses.post(
        SLACK,
        body=requests.ConnectionError(
            f"Max retries exceeded with url: {SLACK} (Connection refused)"
        ),
    )
    with pytest.raises(DeliveryError) as caught:
        notifiers()["slack"].send(alert())
    assert caught.value.retryable
    assert str(caught.value) == "notifier slack: connection refused"
    assert "secret" not in str(caught.value)


def test_slack_escapes_feed_text():
    hostile = alert(
        title="&lt;!channel&gt; Breaking &amp; &lt;https://evil.example|click&gt; <b>now</b>",
        summary="<script>alert(1)</script> @here <!everyone>",
        link="https://news.example.org/a?x=1&y=<2>|z",
    )
    msg = message(hostile)
    text = json.dumps(msg)
    assert "<!channel>" not in text and "<!everyone>" not in text
    assert "<https://evil.example|click>" not in text
    section = msg["blocks"][0]["text"]["text"]
    assert section.startswith("*<https://news.example.org/a?x=1&amp;y=&lt;2&gt;%7Cz|")
    assert "|&lt;!channel&gt; Breaking &amp; &lt;https://evil.example|click&gt; now>*" in section
    assert msg["text"].startswith("[talks] &lt;!channel&gt; Breaking &amp; &lt;https:")
    assert escape("a & <b>") == "a &amp; &lt;b&gt;"


def test_slack_message_shape():
    msg = message(alert())
    assert msg["text"] == "[talks] Istanbul talks resume (world)"
    assert msg["blocks"][0]["text"]["text"].startswith(
        "*<https://news.example.org/1|Istanbul talks resume>*"
    )
    context = msg["blocks"][1]["elements"][0]["text"]
    assert "matched: Istanbul talks" in context and "2026-11-24 10:00 UTC" in context


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,<b>x</b>", "ftp://x/y"])
def test_non_http_links_are_never_clickable(link):
    hostile = alert(link=link)
    assert payload(hostile)["item"]["link"] == ""
    assert "javascript" not in json.dumps(message(hostile))
    html_part = build(hostile, "w@example.org", ("a@example.org",)).get_body(("html",))
    assert html_part is not None
    assert "href" not in html_part.get_content()


def test_email_message_is_multipart_and_safe():
    hostile = alert(title="Talks\r\nBcc: victim@example.org <script>x</script>")
    msg = build(hostile, "watcher <watcher@example.org>", ("desk@example.org",))
    assert msg["Subject"] == "[watcher] talks: Talks Bcc: victim@example.org"
    assert msg["Bcc"] is None
    assert msg["Message-ID"] == "<d-123@example.org>"
    assert msg["X-Watcher-Delivery"] == "d-123"
    assert msg.get_content_type() == "multipart/alternative"
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html_text = html_part.get_content()
    assert "<script>" not in html_text
    assert 'href="https://news.example.org/1"' in html_text
    assert subject(alert(title="x" * 400)).startswith("[watcher] talks: xxx")
    assert len(subject(alert(title="x" * 400))) <= 250


def test_email_is_delivered_over_smtp(smtp_server):
    notifiers(smtp_server.port)["mail"].send(alert())
    (envelope,) = smtp_server.messages
    assert envelope.mail_from == "watcher@example.org"
    assert envelope.rcpt_tos == ["desk@example.org", "chief@example.org"]
    received = email.message_from_bytes(envelope.content, policy=policy.default)
    assert received["Subject"] == "[watcher] talks: Istanbul talks resume"
    plain_text = received.get_body(("plain",)).get_content()
    assert plain_text.splitlines()[:2] == ["Istanbul talks resume", "https://news.example.org/1"]


def test_smtp_server_down_is_retryable():
    from tests.servers import free_port

    with pytest.raises(DeliveryError) as caught:
        notifiers(free_port())["mail"].send(alert())
    assert caught.value.retryable
    assert str(caught.value).startswith("notifier mail: SMTP failure")


def test_smtp_login(smtp_server):
    notifiers(smtp_server.port, login="    username: watcher\n    password: s3cret\n")["mail"].send(
        alert()
    )
    assert len(smtp_server.messages) == 1


def test_smtp_login_refused_is_retryable_and_names_no_password(smtp_server):
    with pytest.raises(DeliveryError) as caught:
        notifiers(smtp_server.port, login="    username: watcher\n    password: wrong\n")[
            "mail"
        ].send(alert())
    assert caught.value.retryable
    assert str(caught.value) == "notifier mail: SMTP login refused (535)"
    assert smtp_server.messages == []


def test_matched_words_are_highlighted_and_still_escaped():
    marked = replace(
        alert(summary="<p>Peskóv &amp; the <b>Kremlin</b> said</p>"), words=("peskov",)
    )
    section = message(marked)["blocks"][0]["text"]["text"]
    assert section.endswith("\n*Peskóv* &amp; the Kremlin said")
    html_part = build(marked, "w@example.org", ("a@example.org",)).get_body(("html",))
    assert html_part is not None
    assert "<p><mark>Peskóv</mark> &amp; the Kremlin said</p>" in html_part.get_content()


def test_discord_posts_an_embed():
    import responses as responses_lib

    url = "https://discord.com/api/webhooks/1/secret"
    config = loads(f'notify:\n  chat: {{type: discord, url: "{url}"}}\n', "t.yaml", env={})
    chat = build_notifiers(config, new_session("t"))["chat"]
    with responses_lib.RequestsMock() as mock:
        mock.post(url, status=204)
        chat.send(alert())
        sent = json.loads(mock.calls[0].request.body)
    assert sent["embeds"][0]["title"] == "Istanbul talks resume"
    assert sent["embeds"][0]["fields"][0] == {"name": "Rule", "value": "talks", "inline": True}
    assert chat.rate is not None and chat.rate.count == 30


def test_custom_templates_escape_feed_text_for_their_channel(tmp_path):
    (tmp_path / "slack.j2").write_text(
        "{{ rule }}: {{ title }} {{ summary_marked }} <{{ link }}|open>\n"
    )
    (tmp_path / "mail.html.j2").write_text("<p>{{ title }}</p><p>{{ summary_marked }}</p>\n")
    config = loads(
        f"""
notify:
  slack: {{type: slack, url: "{SLACK}", template: slack.j2}}
  mail: {{type: email, to: [a@example.org], from: w@example.org, host: h, template: mail.html.j2}}
""",
        str(tmp_path / "watch.yaml"),
        env={},
    )
    built = build_notifiers(config, new_session("t"))
    hostile = replace(
        alert(title="&lt;!channel&gt; talks", summary="Peskov &amp; co"), words=("peskov",)
    )
    section = message(hostile, built["slack"].template)["blocks"][0]["text"]["text"]
    assert (
        section
        == "talks: &lt;!channel&gt; talks *Peskov* &amp; co <https://news.example.org/1|open>"
    )
    html_part = build(
        hostile, "w@example.org", ("a@example.org",), built["mail"].template
    ).get_body(("html",))
    assert html_part is not None
    assert (
        html_part.get_content()
        == "<p>&lt;!channel&gt; talks</p><p><mark>Peskov</mark> &amp; co</p>\n"
    )


def test_template_problems_are_config_errors(tmp_path):
    from watcher.errors import ConfigError

    (tmp_path / "broken.j2").write_text("line one\n{{ title }\n")
    text = f"""notify:
  a: {{type: slack, url: "{SLACK}", template: missing.j2}}
  b: {{type: slack, url: "{SLACK}", template: broken.j2}}
  c: {{type: webhook, url: "{HOOK}", template: x.j2}}
"""
    with pytest.raises(ConfigError) as caught:
        loads(text, str(tmp_path / "watch.yaml"), env={})
    problems = caught.value.problems
    assert problems[0].startswith(
        f"{tmp_path}/watch.yaml:2: notify.a.template: cannot read the template {tmp_path}/missing.j2"
    )
    assert problems[1].startswith(
        f"{tmp_path}/watch.yaml:3: notify.b.template: template {tmp_path}/broken.j2:2: unexpected '}}'"
    )
    assert problems[2] == (
        f"{tmp_path}/watch.yaml:4: notify.c.template: unknown key 'template' for a webhook "
        "notifier (only discord, email, slack notifiers take it)"
    )


@pytest.mark.parametrize(
    ("url", "echo", "shown"),
    [
        (SLACK, "no_service: /services/T0/B0/secret", "no_service: ***"),
        (HOOK, "bad token T000/SECRET-TOKEN", "bad token T000/***"),
        (HOOK, "POST https%3A%2F%2Fhooks.example.org%2FT000%2Fsecret-token", "POST ***"),
        (
            "https://discord.com/api/webhooks/123456789012/AbCdEf_gh-IJ",
            "Unknown Webhook 123456789012 (AbCdEf_gh-IJ)",
            "Unknown Webhook *** (***)",
        ),
        ("https://h.example.org/hook?key=abcd1234", "bad key abcd1234", "bad key ***"),
    ],
)
def test_redact_hides_every_echo_of_a_url(url, echo, shown):
    assert redact(echo, secret_parts(url)) == shown


def test_a_notifier_hides_its_url_secret_and_header_values():
    hook = notifiers()["hook"]
    text = f"{HOOK} signed with s3cret, team desk, /T000/secret-token"
    assert hook.redact(text) == "*** signed with ***, team ***, ***"


def test_apprise_waits_for_its_service_no_longer_than_its_timeout():
    config = loads(
        'notify:\n  push: {type: apprise, url: "json://127.0.0.1:9/x", timeout: 2s}\n',
        "t.yaml",
        env={},
    )
    push = build_notifiers(config, new_session("t"))["push"]
    servers = list(push.service())  # type: ignore[attr-defined]
    assert [(s.socket_connect_timeout, s.socket_read_timeout) for s in servers] == [(2.0, 2.0)]


def test_a_title_with_slack_markup_reaches_slack_as_visible_text(
    make_config, feed_server, receiver
):
    from tests.conftest import rss
    from tests.servers import Route
    from watcher.cycle import run_once

    feed_server.routes["/world.xml"] = Route(
        rss(
            {
                "guid": "1",
                "title": "Peskov &lt;!channel&gt; &lt;http://evil.example|click&gt; statement",
                "link": "https://news.example.org/1",
            },
            {
                "guid": "2",
                "title": "std::vector&lt;int&gt; and &lt;b&gt;Peskov&lt;/b&gt;",
                "link": "https://news.example.org/2",
            },
        )
    )
    config = make_config(
        feeds=[{"url": feed_server.url("/world.xml"), "name": "world", "backfill": True}],
        rules=[
            {"name": "peskov", "query": "Peskov", "notify": ["slack"]},
            {"name": "code", "query": "vector", "notify": ["slack"]},
        ],
        notify={"slack": {"type": "slack", "url": receiver.url("/slack")}},
    )
    assert run_once(config).delivery.sent == 3
    texts = sorted(body["text"] for body in receiver.bodies("/slack"))
    assert texts == [
        "[code] std::vector&lt;int&gt; and Peskov (world)",
        "[peskov] Peskov &lt;!channel&gt; &lt;http://evil.example|click&gt; statement (world)",
        "[peskov] std::vector&lt;int&gt; and Peskov (world)",
    ]
