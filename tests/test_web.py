"""The web pages and the JSON API (watcher.web), through Werkzeug's test client over real
stores: the API on SQLite and PostgreSQL against the CLI's --json, the pages' escaping, the
headers of every response, who may see the pages, and the rule tester."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from werkzeug.test import Client

from tests.servers import free_port
from watcher.cli import main
from watcher.config import load, loads
from watcher.daemon import Daemon
from watcher.errors import ConfigError, StateError
from watcher.models import Entry
from watcher.query import parse
from watcher.rules import Hit, Match
from watcher.search import find
from watcher.state import NewItem, ScheduledFeed, Store, open_store
from watcher.state.sqlite import SQLiteStore
from watcher.web import Site, WebApp, WebServer, is_loopback
from watcher.web.headers import SECURITY_HEADERS

NOW = datetime.now(UTC).replace(microsecond=0)

FEEDS = {
    "feeds": [
        {"url": "http://127.0.0.1:9/world.xml", "name": "world", "tags": ["news"]},
        {"url": "http://127.0.0.1:9/broken.xml", "name": "broken"},
        {"url": "http://127.0.0.1:9/fresh.xml", "name": "fresh"},
    ],
    "rules": [
        {"name": "talks", "query": "Istanbul", "notify": ["hook", "mail"]},
        {"name": "peskov", "query": "Peskov"},
    ],
    "notify": {
        "hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        "mail": {"type": "webhook", "url": "http://127.0.0.1:9/mail"},
    },
}

HOSTILE_TITLE = (
    "<script>window.pwned = 1</script>Istanbul &lt;img src=x onerror=alert(1)&gt;"
    ' <img src=x onerror="document.title=1">'
)


def talks(*notify: str) -> Match:
    return Match("talks", ("Istanbul",), notify, (Hit("Istanbul", "title", ("istanbul",)),))


def seed(store: Store) -> None:
    """Three feeds (ok, failing, new), items old and new, one of them hostile, matches and
    their deliveries (one sent, one dead)."""
    store.sync_feeds(
        [ScheduledFeed(f["name"], f["url"], timedelta(minutes=5), NOW) for f in FEEDS["feeds"]],
        NOW,
    )
    old = Entry("old", title="Istanbul in the old days", link="https://example.org/old")
    store.ingest(
        "world",
        "http://127.0.0.1:9/world.xml",
        etag=None,
        last_modified=None,
        present=["old"],
        new_items=[NewItem(old)],
        now=NOW - timedelta(days=10),
    )
    items = [
        NewItem(
            Entry(
                "talks",
                title="Istanbul talks resume",
                link="https://example.org/talks?a=1&b=2",
                summary="<p>Delegations met in <b>Istanbul</b> on Monday.</p>",
            ),
            (talks("hook", "mail"),),
        ),
        NewItem(Entry("peskov", title="Peskov speaks", link="https://example.org/peskov")),
        NewItem(
            Entry(
                "hostile",
                title=HOSTILE_TITLE,
                link="javascript:alert(1)",
                summary='<a href="javascript:alert(2)">Istanbul</a><svg onload=alert(3)>',
            ),
            (talks(),),
        ),
    ]
    store.ingest(
        "world",
        "http://127.0.0.1:9/world.xml",
        etag=None,
        last_modified=None,
        present=["old", "talks", "peskov", "hostile"],
        new_items=items,
        now=NOW,
    )
    store.record_failure("broken", "http://127.0.0.1:9/broken.xml", "HTTP 500 <b>oops</b>", NOW)
    hook, mail = store.due_deliveries(NOW, ["hook", "mail"])
    store.mark_sent(hook.id, NOW)
    store.mark_failed(mail.id, "HTTP 404", retry_at=None, now=NOW)


def config_text(database: str, **settings: object) -> str:
    return yaml.safe_dump({"settings": {"database": database, "listen": None, **settings}, **FEEDS})


def client(
    store: Store, database: str = "unused.db", *, loopback: bool = True, **settings: object
) -> Client:
    config = loads(config_text(database, **settings), "watch.yaml", env={})
    site = Site(store, lambda: config, lambda: None, lambda: b"watcher_up 1\n", lambda: NOW)
    return Client(WebApp(site, loopback=loopback))


@pytest.fixture
def seeded(db: Store) -> Store:
    seed(db)
    return db


# The JSON API gives the CLI's --json objects, on both backends


def test_the_json_api_gives_what_the_cli_json_prints(store, request, tmp_path):
    seed(store)
    if isinstance(store, SQLiteStore):
        database = str(tmp_path / "watcher.db")
    else:
        database = request.getfixturevalue("postgres_url")
    config = tmp_path / "watch.yaml"
    config.write_text(config_text(database))
    web = client(store, database)

    def cli(*args: str) -> object:
        result = CliRunner().invoke(main, [*args, "--json", "-c", str(config)])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    feeds = web.get("/api/feeds")
    assert feeds.status_code == 200 and feeds.mimetype == "application/json"
    assert feeds.json == sorted(cli("feeds"), key=lambda feed: feed["name"])  # by name
    statuses = [(f["name"], f["status"], f["items"]) for f in feeds.json]
    assert statuses == [("broken", "failing", 0), ("fresh", "new", 0), ("world", "ok", 4)]
    matches = web.get("/api/matches?since=30d").json
    assert matches == cli("matches", "--since", "30d")
    assert {m["key"] for m in matches} == {"talks", "hostile"}
    assert next(m for m in matches if m["key"] == "hostile")["link"] == ""  # javascript: dropped
    assert web.get("/api/deliveries").json == cli("deliveries")
    assert [d["status"] for d in web.get("/api/deliveries?status=dead").json] == ["dead"]
    assert web.get("/api/deliveries?failed=1").json == cli("deliveries", "--failed")


def test_the_feeds_api_pages_by_name_and_links_the_next_page(seeded):
    web = client(seeded)
    first = web.get("/api/feeds?limit=2")
    assert [f["name"] for f in first.json] == ["broken", "fresh"]
    assert first.headers["Link"] == '</api/feeds?after=fresh&limit=2>; rel="next"'
    second = web.get("/api/feeds?after=fresh&limit=2")
    assert [f["name"] for f in second.json] == ["world"] and "Link" not in second.headers
    assert [f["name"] for f in web.get("/api/feeds?status=failing").json] == ["broken"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/feeds?status=sick", "status: expected one of ok, failing, new, moved, gone"),
        ("/api/feeds?limit=0", "limit: expected a number from 1 to 1000"),
        ("/api/matches?since=yesterday", "since: invalid duration 'yesterday'"),
        ("/api/deliveries?status=lost", "status: expected one of pending, sent, dead"),
        ("/api/nothing", "The requested URL was not found"),
    ],
)
def test_a_bad_api_request_is_a_json_error_never_a_500(seeded, path, message):
    response = client(seeded).get(path)
    assert response.status_code in (400, 404)
    assert response.json["error"].startswith(message)


# Pages


PAGES = [
    "/",
    "/feeds",
    "/feeds?status=failing",
    "/feeds/world",
    "/feeds/broken",
    "/matches?since=30d",
    "/matches?rule=talks",
    "/deliveries",
    "/deliveries?status=failed",
    "/test?q=Istanbul",
    "/search?q=Istanbul",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_and_nothing_from_a_feed_becomes_markup(seeded, path):
    response = client(seeded).get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.text
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    assert "<script" not in page.lower()
    assert "<img" not in page and "<svg" not in page and "<b>" not in page
    assert "javascript:" not in page
    assert "onerror=" not in page or "&lt;img src=x onerror=alert(1)&gt;" in page
    for stray in ("onerror=alert", "onload="):
        for line in page.splitlines():
            assert stray not in line or "&lt;" in line, line


def test_the_overview_shows_feeds_by_health_the_outbox_and_the_last_alerts(seeded):
    page = client(seeded).get("/").text
    assert (
        '<a href="/feeds?status=failing"><span class="badge failing">failing</span> <strong>1</strong></a>'
        in page
    )
    assert (
        '<a href="/deliveries?status=dead"><span class="badge dead">dead</span> <strong>1</strong></a>'
        in page
    )
    assert "HTTP 500 &lt;b&gt;oops&lt;/b&gt;" in page  # the failing feed's error, escaped
    assert (
        '<a href="https://example.org/talks?a=1&amp;b=2" rel="noopener noreferrer nofollow">Istanbul talks resume</a>'
        in page
    )
    assert '<meta http-equiv="refresh" content="60">' in page


def test_a_feed_page_lists_its_newest_items_and_an_unknown_feed_is_a_404(seeded):
    web = client(seeded)
    page = web.get("/feeds/world").text
    assert page.index("Istanbul talks resume") < page.index("Istanbul in the old days")
    assert "<dd>4</dd>" in page and "<dd>news</dd>" in page and "<dd>5m</dd>" in page
    missing = web.get("/feeds/nope")
    assert missing.status_code == 404 and "no feed named &#39;nope&#39;" in missing.text


def test_the_tester_marks_the_matched_words_of_the_items_seen_since(seeded):
    page = client(seeded).get("/test?q=Istanbul&since=7d").text
    assert "2 items matched" in page
    assert (
        '<a href="https://example.org/talks?a=1&amp;b=2" rel="noopener noreferrer nofollow"><mark>Istanbul</mark> talks resume</a>'
        in page
    )
    assert "Delegations met in <mark>Istanbul</mark> on Monday." in page
    assert "<mark>Istanbul</mark> &lt;img src=x onerror=alert(1)&gt;" in page  # not a link
    assert "in the old days" not in page  # seen 10 days ago
    assert "in the old days" in client(seeded).get("/test?q=Istanbul&since=30d").text


def test_a_bad_query_shows_its_column_never_a_500(seeded):
    response = client(seeded).get("/test?q=%22Istanbul+talks%22+(Peskov")
    assert response.status_code == 200
    assert "column 18: unbalanced parenthesis" in response.text
    pointer = "&#34;Istanbul talks&#34; (Peskov\n" + " " * 17 + "^</pre>"
    assert f'<pre class="pointer" aria-hidden="true">{pointer}' in response.text
    assert "column 1" in client(seeded).get("/search?q=OR").text
    assert "since: invalid duration" in client(seeded).get("/test?q=x&since=soon").text
    assert "since: invalid duration" in client(seeded).get("/matches?since=soon").text


def test_a_search_limited_in_time_stops_at_the_first_item_seen_well_before(seeded, monkeypatch):
    read: list[int] = []
    candidates = seeded.search_candidates

    def counted(*args, **kwargs):
        found = candidates(*args, **kwargs)
        read.extend(item_id for item_id, _ in found)
        return found

    monkeypatch.setattr(seeded, "search_candidates", counted)
    result = find(seeded, parse("Istanbul OR Peskov OR days"), since=NOW - timedelta(days=1))
    assert [f.item.entry.key for f in result.found] == ["hostile", "talks", "peskov"]
    assert len(read) == 4  # the old item ended the search: nothing older was asked for
    assert result.complete
    everything = find(seeded, parse("Istanbul OR Peskov OR days"))
    assert len(everything.found) == 4


@pytest.mark.parametrize("path", ["/", "/test", "/feeds/world", "/api/feeds", "/healthz"])
def test_the_pages_are_read_only(seeded, path):
    web = client(seeded)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = web.open(path, method=method, data={"q": "x"})
        assert response.status_code == 405, method
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    head = web.head(path)
    assert head.status_code == 200 and head.data == b""


# Headers of every response, errors included


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/healthz",
        "/metrics",
        "/nope",
        "/api/nope",
        "/api/feeds",
        "/static/style.css",
        "/favicon.ico",
    ],
)
def test_every_response_carries_the_security_headers(seeded, path):
    response = client(seeded).get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]


def test_a_failure_is_a_500_or_503_page_with_the_headers_and_without_details(
    seeded, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(seeded, "feed_health", broken)
    response = client(seeded).get("/")
    assert response.status_code == 500 and "secret detail" not in response.text
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "secret detail" in caplog.text  # the log has it

    def down(*args, **kwargs):
        raise StateError("database w.db: disk I/O error")

    monkeypatch.setattr(seeded, "feed_health", down)
    response = client(seeded).get("/")
    assert response.status_code == 503 and "disk I/O error" in response.text
    assert client(seeded).get("/healthz").status_code == 200


def test_the_server_answers_a_malformed_request_with_the_headers_too(seeded):
    server = WebServer(f"127.0.0.1:{free_port()}", client(seeded).application)
    server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            headers = b"".join(b"X-%d: y\r\n" % n for n in range(200))
            connection.sendall(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
            answer = connection.makefile("rb").read().decode()
    finally:
        server.stop()
    assert answer.startswith("HTTP/1.1 431")  # answered by http.server, not by the app
    assert "X-Content-Type-Options: nosniff" in answer
    assert "Content-Security-Policy: default-src 'self'" in answer


# Who may see the pages


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:9187", True),
        ("127.0.0.2:9187", True),
        ("[::1]:9187", True),
        ("localhost:9187", True),
        ("0.0.0.0:9187", False),
        ("[::]:9187", False),
        ("192.168.1.5:9187", False),
        ("watcher.example.org:9187", False),
    ],
)
def test_loopback_addresses(listen, loopback):
    assert is_loopback(listen) is loopback


def test_off_loopback_without_web_auth_only_health_and_metrics_answer(seeded):
    web = client(seeded, loopback=False)
    assert web.get("/healthz").status_code == 200
    assert web.get("/metrics").text == "watcher_up 1\n"
    for path in ("/", "/api/feeds", "/test?q=x", "/static/style.css", "/nope"):
        response = web.get(path)
        assert response.status_code == 403, path
        assert "settings.web_auth is not set" in response.text


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("localhost", True),
        ("localhost:9187", True),
        ("127.0.0.1:9187", True),
        ("[::1]:9187", True),
        ("evil.example:9187", False),  # a name pointed at 127.0.0.1 by a page (DNS rebinding)
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_the_open_pages_answer_only_requests_for_a_loopback_name(seeded, host, answered):
    web = client(seeded)
    response = web.get("/api/feeds", headers={"Host": host})
    assert (response.status_code == 200) is answered, response.text
    assert web.get("/healthz", headers={"Host": host}).status_code == 200  # probes from anywhere
    with_auth = client(seeded, web_auth={"username": "desk", "password": "pw"})
    authorized = {"Host": host, "Authorization": "Basic ZGVzazpwdw=="}  # desk:pw
    assert with_auth.get("/api/feeds", headers=authorized).status_code == 200


@pytest.mark.parametrize("loopback", [True, False])
def test_web_auth_is_asked_for_and_compared(seeded, loopback):
    auth = {"username": "desk", "password": "pa:ss-wörd"}
    web = client(seeded, loopback=loopback, web_auth=auth)
    refused = web.get("/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="watcher", charset="UTF-8"'
    assert refused.headers["X-Frame-Options"] == "DENY"
    assert web.get("/", auth=("desk", "wrong")).status_code == 401
    assert web.get("/", auth=("other", "pa:ss-wörd")).status_code == 401
    assert web.get("/", auth=("desk", "pa:ss-wörd")).status_code == 200
    assert web.get("/api/feeds", auth=("desk", "pa:ss-wörd")).status_code == 200
    assert web.get("/healthz").status_code == 200  # probes carry no password


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{username: ed, password: ""}', "settings.web_auth.password: the password is empty"),
        (
            "{username: 'a:b', password: hunter2}",
            "settings.web_auth.username: a user name cannot hold ':'",
        ),
        ("{username: ed}", "settings.web_auth: missing required key 'password'"),
        ("ed:hunter2", "settings.web_auth: expected a mapping: {username: ..., password: ...}"),
        ("{username: ed, password: x, realm: y}", "settings.web_auth.realm: unknown key 'realm'"),
    ],
)
def test_a_malformed_web_auth_is_a_config_error(value, problem):
    text = f"settings:\n  web_auth: {value}\nfeeds:\n  - url: https://example.org/rss.xml\n"
    with pytest.raises(ConfigError) as caught:
        loads(text, "watch.yaml", env={})
    assert any(p.startswith(f"watch.yaml:2: {problem}") for p in caught.value.problems)
    assert all("hunter2" not in p for p in caught.value.problems)


def test_the_web_auth_password_comes_from_the_environment_and_is_never_shown():
    text = "settings:\n  web_auth: {username: ed, password: '${WEB_PASSWORD}'}\nfeeds: [{url: https://example.org/r}]\n"
    config = loads(text, "watch.yaml", env={"WEB_PASSWORD": "hunter2-Zq"})
    assert config.settings.web_auth.password.get_secret_value() == "hunter2-Zq"
    assert "hunter2-Zq" not in repr(config) and "hunter2-Zq" not in str(config.settings)


def daemon_config(tmp_path: Path, listen: str, **settings: object) -> Path:
    path = tmp_path / "watch.yaml"
    path.write_text(config_text(str(tmp_path / "w.db"), listen=listen, **settings))
    return path


@pytest.mark.parametrize(
    ("host", "settings", "said"),
    [
        ("127.0.0.1", {}, "web pages on http://127.0.0.1:{port}/; health and metrics on"),
        (
            "0.0.0.0",
            {},
            "web pages off: 0.0.0.0:{port} is not a loopback address and settings.web_auth is not set",
        ),
        (
            "0.0.0.0",
            {"web_auth": {"username": "desk", "password": "hunter2-Zq"}},
            "web pages on http://0.0.0.0:{port}/ (user and password of settings.web_auth)",
        ),
    ],
)
def test_the_daemon_says_at_start_where_the_pages_are_and_who_may_see_them(
    tmp_path, caplog, host, settings, said
):
    caplog.set_level(logging.INFO, logger="watcher.daemon")
    port = free_port()
    daemon = Daemon(load(daemon_config(tmp_path, f"{host}:{port}", **settings)))
    daemon.start()
    daemon.stop()
    assert said.format(port=port) in caplog.text
    assert f"health and metrics on http://{host}:{port}/healthz and /metrics" in caplog.text
    assert "hunter2" not in caplog.text


def test_pages_read_the_state_of_a_postgresql_database_too(postgres_url):
    store = open_store(postgres_url)
    try:
        seed(store)
        web = client(store, postgres_url)
        for path in PAGES:
            assert web.get(path).status_code == 200, path
        assert "2 items matched" in web.get("/test?q=Istanbul").text
    finally:
        store.close()


def test_matches_and_the_overview_show_each_story_once_with_its_other_reports(db):
    from tests.test_state import PESKOV, TRUCE, TRUCE_RETOLD, report

    for feed, item, moment in (
        ("tass", report("a", *TRUCE), NOW - timedelta(hours=2)),
        ("reuters", report("b", *TRUCE_RETOLD), NOW - timedelta(hours=1)),
    ):
        db.ingest(
            feed,
            f"https://{feed}.example/rss",
            etag=None,
            last_modified=None,
            present=[],
            new_items=[item],
            now=moment,
        )
    web = client(db)
    for path in ("/matches?since=1d", "/"):
        page = web.get(path).text
        assert page.count(f">{TRUCE[0]}</a>") == 1, path  # the alerted report, once
        assert "<strong>+1 source</strong>" in page, path
        assert "1 more report of this story, alerted once" in page, path
        assert f">{TRUCE_RETOLD[0]}</a>" in page, path
    (story,) = web.get("/api/matches?since=1d").json
    assert story["rule"] == PESKOV.rule and story["story"]["outlets"] == ["tass", "reuters"]
