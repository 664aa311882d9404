"""``full_text: true`` end to end (issue 14): real loopback servers serve the feeds and the
article pages; ``watcher once`` through ``run_once``, ``watcher run`` as a real process."""

from __future__ import annotations

import email
import gzip
import logging
import signal
import threading
import time
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.attack.test_fetch_attacks import feed_server_on, internet  # noqa: F401
from tests.conftest import DATA, rss
from tests.integration.process import Output, start, wait_for
from tests.servers import FeedServer, Route
from watcher import fulltext
from watcher.cycle import now, run_once
from watcher.models import Entry
from watcher.state import NewItem, open_store

ARTICLES = DATA / "articles"
HTML = "text/html; charset=utf-8"


def page(name: str) -> Route:
    return Route((ARTICLES / f"{name}.html").read_bytes(), content_type=HTML)


def item(key: str, title: str, link: str) -> dict[str, str]:
    return {"guid": key, "title": title, "link": link}


@pytest.fixture
def config(make_config, feed_server, receiver, smtp_server):
    def build(*feeds: dict[str, Any], **settings: Any) -> Any:
        return make_config(
            settings={"timeout": "2s", **settings},
            feeds=list(feeds)
            or [{"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}],
            rules=[
                {"name": "peskov", "any": ["Peskov"], "notify": ["hook", "slack", "mail"]},
                {"name": "fishing", "query": "anchovy", "notify": ["hook"]},
            ],
            notify={
                "hook": {"type": "webhook", "url": receiver.url("/hook")},
                "slack": {"type": "slack", "url": receiver.url("/slack")},
                "mail": {
                    "type": "email",
                    "to": ["desk@example.org"],
                    "from": "watcher@example.org",
                    "host": "127.0.0.1",
                    "port": smtp_server.port,
                    "security": "none",
                },
            },
        )

    return build


def article_requests(server: FeedServer) -> list[str]:
    return [request.path for request in server.requests if request.path.startswith("/a/")]


def test_a_headline_alerts_on_its_article_never_on_the_sidebar(
    config, feed_server, receiver, smtp_server
):
    feed_server.routes["/a/old"] = page("kremlin-talks")
    feed_server.routes["/feed.xml"] = Route(rss(item("0", "Old news", feed_server.url("/a/old"))))
    first = run_once(config())
    assert first.outcomes[0].baseline
    assert article_requests(feed_server) == []  # a baseline item's page is never fetched

    feed_server.routes["/a/talks"] = page("kremlin-talks")  # Peskov in the third paragraph
    feed_server.routes["/a/grain"] = page("grain-port")  # Peskov only in "Most popular"
    feed_server.routes["/a/fish"] = page("dense-sidebar")  # and in an inline "Related" box
    feed_server.routes["/feed.xml"] = Route(
        rss(
            item("1", "Negotiators return to Istanbul", feed_server.url("/a/talks")),
            item("2", "Grain shipments resume", feed_server.url("/a/grain")),
            item("3", "Fishermen count the cost", feed_server.url("/a/fish")),
            item("0", "Old news", feed_server.url("/a/old")),
        )
    )
    report = run_once(config())
    assert not report.failed
    alerts = sorted(
        (match.rule, item.entry.title)
        for outcome in report.outcomes
        for item in outcome.new_items
        for match in item.matches
    )
    assert alerts == [
        ("fishing", "Fishermen count the cost"),
        ("peskov", "Negotiators return to Istanbul"),
    ]
    assert sorted(article_requests(feed_server)) == ["/a/fish", "/a/grain", "/a/talks"]
    assert feed_server.requests[-1].headers["User-Agent"].startswith("watcher/")

    hooks = {body["rule"]: body for body in receiver.bodies("/hook")}
    peskov = hooks["peskov"]
    assert peskov["highlight"] == ["peskov"]
    assert peskov["excerpt"] == (
        "In Moscow, the Kremlin spokesperson Dmitry Peskov told reporters that the delegation"
        ' had "clear instructions" and that any agreement would depend on what he called the'
        " realities on the ground."
    )
    assert "anchovy boats of Sinop" in hooks["fishing"]["excerpt"]
    (slack,) = receiver.bodies("/slack")
    assert "> In Moscow, the Kremlin spokesperson Dmitry *Peskov* told" in str(slack["blocks"])
    (envelope,) = smtp_server.messages
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    assert 'Matched in the text: "In Moscow, the Kremlin spokesperson Dmitry Peskov' in text
    assert "<mark>Peskov</mark>" in message.get_body(("html",)).get_content()

    again = run_once(config())  # the same feed again: nothing fetched, nothing alerted
    assert again.outcomes[0].status == "not_modified"
    assert len(article_requests(feed_server)) == 3
    assert len(receiver.bodies("/hook")) == 2


def test_a_page_two_feeds_link_to_is_fetched_once_and_alerted_once(config, feed_server, receiver):
    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.routes["/a/talks?utm_source=rss"] = page("kremlin-talks")
    link = feed_server.url("/a/talks")
    feed_server.routes["/one.xml"] = Route(rss(item("1", "Talks resume", link)))
    feed_server.routes["/two.xml"] = Route(
        rss(item("x", "Istanbul round two", f"{link}?utm_source=rss"))
    )
    cfg = config(
        {"url": feed_server.url("/one.xml"), "name": "one", "full_text": True, "backfill": True},
        {"url": feed_server.url("/two.xml"), "name": "two", "full_text": True, "backfill": True},
    )
    run_once(cfg)
    fetched = article_requests(feed_server)
    assert len(fetched) == 1
    assert [body["rule"] for body in receiver.bodies("/hook")] == ["peskov"]

    feed_server.routes["/three.xml"] = Route(rss(item("y", "Same story", link)))
    three = {"url": feed_server.url("/three.xml"), "name": "three", "full_text": True}
    run_once(config(*cfg.model_dump()["feeds"], {**three, "backfill": True}))
    assert article_requests(feed_server) == fetched  # its text was kept


def gzip_bomb() -> Route:
    body = gzip.compress(b"<html><body><p>" + b" " * 30_000_000, compresslevel=9)
    return Route(body, content_type=HTML, headers={"Content-Encoding": "gzip"})


BAD_PAGES: dict[str, tuple[Any, str]] = {
    "404": (lambda: None, "HTTP 404 Not Found"),
    "pdf": (lambda: Route(b"%PDF-1.7\n%Peskov", content_type="application/pdf"), "not HTML"),
    "50MB": (lambda: Route(b"<html>" + b"x" * 50_000_000, content_type=HTML), "larger than"),
    "gzip bomb": (gzip_bomb, "larger than max_feed_size"),
    "no text": (lambda: Route(b"<html><body></body></html>", content_type=HTML), "no article text"),
    # passing causes: no other try for an item that its headline already matches
    "503": (lambda: Route(b"busy", status=503, content_type="text/plain"), "HTTP 503"),
    "drip": (
        lambda: Route(b"<html><body>" + b"x" * 100, content_type=HTML, drip=0.05),
        "took longer",
    ),
}
"""Each page made by the test that uses it: 80 MB held through the whole run otherwise."""


@pytest.mark.parametrize("case", BAD_PAGES)
def test_a_page_that_fails_leaves_the_item_matched_on_the_feed_text(
    case, config, feed_server, receiver, caplog
):
    make, cause = BAD_PAGES[case]
    route = make()
    if route is not None:
        feed_server.routes["/a/bad"] = route
    feed_server.routes["/feed.xml"] = Route(
        rss(
            item("1", "Peskov on the talks", feed_server.url("/a/bad")),
            item("2", "Fishing news", feed_server.url("/a/fish")),
        )
    )
    feed_server.routes["/a/fish"] = page("dense-sidebar")
    full = {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}
    with caplog.at_level(logging.INFO):
        report = run_once(config({**full, "backfill": True}, timeout="1s", max_feed_size="1MB"))
    assert not report.failed
    assert sorted(body["rule"] for body in receiver.bodies("/hook")) == ["fishing", "peskov"]
    failures = [r.getMessage() for r in caplog.records if "article not used" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].startswith("feed world: article not used (")
    assert cause in failures[0]
    assert failures[0].endswith(f"matched on the feed's text: {feed_server.url('/a/bad')}")
    hook = next(body for body in receiver.bodies("/hook") if body["rule"] == "peskov")
    assert hook["excerpt"] is None


PASSING: dict[str, tuple[Any, str]] = {
    "503": (lambda: Route(b"busy", status=503, content_type="text/plain"), "HTTP 503"),
    "drip": (
        lambda: Route(b"<html><body>" + b"x" * 100, content_type=HTML, drip=0.05),
        "took longer",
    ),
}
"""Pages that fail for a passing cause: tried again before the feed's text is used."""


def talks_feed(feed_server: FeedServer) -> dict[str, Any]:
    """A full_text feed of one item whose article, not its headline, names Peskov."""
    feed_server.routes["/feed.xml"] = Route(
        rss(item("1", "Negotiators return", feed_server.url("/a/talks")))
    )
    return {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}


def retries(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]


def test_a_page_that_fails_for_a_passing_cause_is_read_once_it_is_back(
    config, feed_server, receiver, caplog, tmp_path
):
    """A site that buckles under a breaking story answers 503 at first: the item waits,
    and alerts on its article once the page is back, not on the feed's text."""
    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.planned["/a/talks"] = [Route(b"busy", status=503, content_type="text/plain")]
    cfg = config({**talks_feed(feed_server), "backfill": True})
    with caplog.at_level(logging.INFO):
        run_once(cfg)
    assert receiver.bodies("/hook") == []  # "Negotiators return" alone matches nothing
    assert retries(caplog) == [
        f"feed world: article page failed (HTTP 503 Service Unavailable); trying again in"
        f" 30s: {feed_server.url('/a/talks')}"
    ]
    store = open_store(cfg.settings.database)
    assert store.claim_articles(now(), 10, timedelta(minutes=1)) == []
    [waiting] = store.claim_articles(now() + timedelta(seconds=31), 10, timedelta(minutes=1))
    assert waiting.tries == 1
    store.release_articles([waiting.id])  # as if the 30 s had passed
    store.close()
    run_once(cfg)
    [hook] = receiver.bodies("/hook")
    assert hook["rule"] == "peskov" and "Peskov" in hook["excerpt"]
    assert article_requests(feed_server) == ["/a/talks", "/a/talks"]


def test_the_wait_before_another_try_is_what_the_site_asks(config, feed_server, caplog):
    feed_server.routes["/a/talks"] = Route(
        b"slow down", status=429, content_type="text/plain", headers={"Retry-After": "120"}
    )
    with caplog.at_level(logging.INFO):
        run_once(config({**talks_feed(feed_server), "backfill": True}))
    [line] = retries(caplog)
    assert "trying again in 2min:" in line


@pytest.mark.parametrize("case", PASSING)
def test_a_page_that_keeps_failing_is_given_up_and_the_item_matched_on_the_feed_text(
    case, config, feed_server, receiver, caplog, monkeypatch
):
    monkeypatch.setattr(fulltext, "RETRY", timedelta(0))  # each try due at once
    make, cause = PASSING[case]
    feed_server.routes["/a/talks"] = make()
    cfg = config({**talks_feed(feed_server), "backfill": True}, timeout="1s")
    with caplog.at_level(logging.INFO):
        run_once(cfg)
    assert article_requests(feed_server) == ["/a/talks"] * fulltext.TRIES
    assert len(retries(caplog)) == fulltext.TRIES - 1
    assert all(cause in line for line in retries(caplog))
    failures = [r.getMessage() for r in caplog.records if "article not used" in r.getMessage()]
    assert len(failures) == 1 and cause in failures[0]
    assert receiver.bodies("/hook") == []  # the headline alone matches nothing
    store = open_store(cfg.settings.database)
    assert store.claim_articles(now() + timedelta(hours=1), 10, timedelta(minutes=1)) == []
    store.close()


def test_the_wait_grows_with_each_try_and_a_site_may_only_lengthen_it():
    assert [fulltext.retry_wait(tries, timedelta(0)) for tries in (1, 2, 3)] == [
        timedelta(seconds=30),
        timedelta(seconds=90),
        timedelta(seconds=270),
    ]
    assert fulltext.retry_wait(1, timedelta(seconds=5)) == timedelta(seconds=30)
    assert fulltext.retry_wait(1, timedelta(seconds=200)) == timedelta(seconds=200)
    assert fulltext.retry_wait(1, timedelta(hours=1)) == fulltext.RETRY_MOST


def test_a_link_that_is_not_http_is_never_fetched(config, feed_server, receiver):
    feed_server.routes["/feed.xml"] = Route(
        rss(
            item("1", "Peskov speaks", "file:///etc/passwd"),
            item("2", "Peskov again", f"ftp://127.0.0.1:{feed_server.base.rsplit(':', 1)[1]}/a"),
        )
    )
    full = {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}
    run_once(config({**full, "backfill": True}))
    assert [r.path for r in feed_server.requests] == ["/feed.xml"]
    assert len(receiver.bodies("/hook")) == 2  # matched on the feed's text


@pytest.mark.usefixtures("internet")
def test_a_public_feeds_article_cannot_lead_into_the_local_network(
    config, feed_server, receiver, caplog
):
    feed_server.routes["/secret"] = Route(b"<html><body><p>Peskov secret</p></body></html>")
    with feed_server_on("127.0.0.2") as public:
        public.routes["/a/moved"] = Route(status=302, location=feed_server.url("/secret"))
        public.routes["/feed.xml"] = Route(
            rss(
                item("1", "Moved story", public.url("/a/moved")),
                item("2", "Direct story", feed_server.url("/secret")),
            )
        )
        feed = {"url": public.url("/feed.xml"), "name": "public", "full_text": True}
        run_once(config({**feed, "backfill": True}))
    assert feed_server.requests == []  # the loopback server was never reached
    assert receiver.bodies("/hook") == []  # and nothing it holds was matched
    refused = [r.getMessage() for r in caplog.records if "article not used" in r.getMessage()]
    assert len(refused) == 2
    assert all("to a non-public one refused" in message for message in refused)


def test_a_dry_run_matches_articles_and_records_nothing(config, feed_server, receiver, tmp_path):
    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.routes["/feed.xml"] = Route(
        rss(item("1", "Negotiators return", feed_server.url("/a/talks")))
    )
    full = {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}
    report = run_once(config({**full, "backfill": True}), dry_run=True)
    [[found]] = [outcome.new_items for outcome in report.outcomes]
    assert [match.rule for match in found.matches] == ["peskov"]
    assert receiver.requests == [] and not (tmp_path / "watcher.db").exists()


def test_an_item_left_pending_by_a_crash_is_matched_at_the_next_run(
    config, feed_server, receiver, tmp_path
):
    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.routes["/feed.xml"] = Route(b"", status=304)
    cfg = config()
    store = open_store(tmp_path / "watcher.db")  # a poll stored it, then the process died
    entry = Entry("1", title="Negotiators return", link=feed_server.url("/a/talks"))
    store.ingest(
        "world",
        cfg.feeds[0].url,
        etag=None,
        last_modified=None,
        present=["1"],
        new_items=[NewItem(entry, article=True)],
        now=now(),
    )
    store.claim_articles(now(), 10, lease=timedelta(hours=1))
    store.close()
    run_once(cfg)
    assert [body["rule"] for body in receiver.bodies("/hook")] == ["peskov"]
    run_once(cfg)
    assert len(receiver.bodies("/hook")) == 1  # and exactly once


class GatedServer(FeedServer):
    """A feed server whose ``gated`` paths answer only once ``gate`` is set: an article page
    as slow as a test needs, without a sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gated: set[str] = set()
        self.waiting = threading.Event()

    def handler(self) -> Any:
        base = super().handler()
        server = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                if self.path in server.gated:
                    server.waiting.set()
                    server.gate.wait(30)
                super().do_GET()

        return Handler


def test_watcher_run_alerts_on_articles_and_slow_pages_never_hold_other_feeds(
    tmp_path: Path, receiver
):
    from watcher.demo import serve_on_loopback as serve

    server = GatedServer()
    with serve(server.handler()) as base:
        server.base = base
        server.routes["/slow.xml"] = Route(rss(item("0", "Old", server.url("/a/old"))))
        server.routes["/fast.xml"] = Route(rss(item("0", "Old", server.url("/a/old"))))
        config = tmp_path / "watch.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "settings": {
                        "database": str(tmp_path / "w.db"),
                        "listen": None,
                        "interval": "1s",
                        "timeout": "20s",
                    },
                    "feeds": [
                        {"url": server.url("/slow.xml"), "name": "slow", "full_text": True},
                        {"url": server.url("/fast.xml"), "name": "fast", "full_text": True},
                    ],
                    "rules": [{"name": "peskov", "query": "Peskov", "notify": ["hook"]}],
                    "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
                }
            )
        )
        process = start(config)
        output = Output(process)
        try:
            output.wait_for("first poll, 1 item stored as a baseline")
            wait_for(lambda: output.text.count("stored as a baseline") == 2)
            server.gated.add("/a/slow")
            server.routes["/a/slow"] = page("energy-inline-ads")
            server.routes["/a/fast"] = page("kremlin-talks")
            server.routes["/slow.xml"] = Route(rss(item("1", "Gas deal", server.url("/a/slow"))))
            assert server.waiting.wait(30)  # the slow page is being fetched, and hangs
            server.routes["/fast.xml"] = Route(rss(item("1", "Talks", server.url("/a/fast"))))
            wait_for(lambda: len(receiver.bodies("/hook")) == 1, timeout=30)
            assert receiver.bodies("/hook")[0]["item"]["title"] == "Talks"
            server.gate.set()
            wait_for(lambda: len(receiver.bodies("/hook")) == 2, timeout=30)
            assert (
                "the Kremlin's spokesman, Dmitry Peskov" in receiver.bodies("/hook")[1]["excerpt"]
            )
            time.sleep(1.5)  # more polls: nothing fetched or alerted again
            assert len([r for r in server.requests if r.path.startswith("/a/")]) == 2
            assert len(receiver.bodies("/hook")) == 2
        finally:
            server.gate.set()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            text = output.close()
        assert process.returncode == 0, text


def test_a_database_failure_while_recording_an_article_loses_no_alert(
    config, feed_server, receiver, monkeypatch, caplog
):
    from watcher.errors import StateError
    from watcher.state.sql import SQLStore

    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.routes["/feed.xml"] = Route(
        rss(item("1", "Negotiators return", feed_server.url("/a/talks")))
    )
    full = {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}
    cfg = config({**full, "backfill": True})

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise StateError("database w.db: database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(SQLStore, "record_article", full_disk)
        report = run_once(cfg)
    assert receiver.requests == []
    assert "articles: cannot record them in the database: database w.db" in caplog.text
    assert report.outcomes[0].articles == 1  # still waiting
    run_once(cfg)
    assert [body["rule"] for body in receiver.bodies("/hook")] == ["peskov"]


def test_full_text_on_postgresql(config, feed_server, receiver, postgres_url):
    feed_server.routes["/a/talks"] = page("kremlin-talks")
    feed_server.routes["/a/grain"] = page("grain-port")
    feed_server.routes["/feed.xml"] = Route(
        rss(
            item("1", "Negotiators return", feed_server.url("/a/talks")),
            item("2", "Grain shipments resume", feed_server.url("/a/grain")),
        )
    )
    full = {"url": feed_server.url("/feed.xml"), "name": "world", "full_text": True}
    cfg = config({**full, "backfill": True}, database=postgres_url)
    run_once(cfg)
    run_once(cfg)
    [hook] = receiver.bodies("/hook")
    assert hook["rule"] == "peskov" and "Dmitry Peskov told reporters" in hook["excerpt"]
    assert len(article_requests(feed_server)) == 2
