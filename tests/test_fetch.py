from __future__ import annotations

import pytest
import requests
import responses

from watcher.errors import FetchError
from watcher.fetch import fetch
from watcher.http import new_session

URL = "http://feeds.example.org/rss.xml"


@pytest.fixture
def session():
    with new_session("watcher-test/1.0") as s:
        yield s


@responses.activate
def test_sends_user_agent_and_conditional_headers(session):
    responses.get(URL, body=b"<rss/>", headers={"ETag": '"v2"', "Last-Modified": "Tue, 24 Nov"})
    result = fetch(session, "f", URL, etag='"v1"', last_modified="Mon, 23 Nov")
    sent = responses.calls[0].request.headers
    assert sent["User-Agent"] == "watcher-test/1.0"
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Mon, 23 Nov"
    assert (result.status, result.body, result.etag, result.last_modified) == (
        200,
        b"<rss/>",
        '"v2"',
        "Tue, 24 Nov",
    )


@responses.activate
def test_304_is_a_result_not_an_error(session):
    responses.get(URL, status=304)
    result = fetch(session, "f", URL, etag='"v1"')
    assert result.not_modified
    assert result.body == b""
    assert result.etag == '"v1"'


@responses.activate
def test_no_validators_means_no_conditional_headers(session):
    responses.get(URL, body=b"x")
    fetch(session, "f", URL)
    assert "If-None-Match" not in responses.calls[0].request.headers
    assert "If-Modified-Since" not in responses.calls[0].request.headers


@responses.activate
def test_feed_headers_are_sent(session):
    responses.get(URL, body=b"x")
    fetch(session, "f", URL, headers={"Authorization": "Bearer t"})
    assert responses.calls[0].request.headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "HTTP 404 Not Found"), (500, "HTTP 500"), (410, "the feed is gone")],
)
@responses.activate
def test_error_status_is_a_fetch_error(session, status, message):
    responses.get(URL, status=status)
    with pytest.raises(FetchError, match=message) as caught:
        fetch(session, "world", URL)
    assert caught.value.status == status
    assert str(caught.value).startswith("feed world: ")


@responses.activate
def test_timeout_is_a_fetch_error(session):
    responses.get(URL, body=requests.ConnectTimeout("timed out: " + URL))
    with pytest.raises(FetchError, match=r"^feed f: timed out after 5s$"):
        fetch(session, "f", URL, timeout=5)


@responses.activate
def test_connection_error_message_is_short(session):
    responses.get(
        URL, body=requests.ConnectionError(f"HTTPConnectionPool: {URL} Connection refused")
    )
    with pytest.raises(FetchError, match=r"^feed f: connection refused$"):
        fetch(session, "f", URL)


@responses.activate
def test_oversized_response_is_cut_off(session):
    responses.get(URL, body=b"x" * 300_000)
    with pytest.raises(FetchError, match="larger than max_feed_size"):
        fetch(session, "f", URL, max_size=100_000)


def test_slow_server_hits_the_deadline(feed_server):
    from tests.servers import Route

    feed_server.routes["/slow"] = Route(body=b"<rss/>", delay=0.6)
    with new_session("t") as session, pytest.raises(FetchError, match=r"timed out after 0\.2s"):
        fetch(session, "slow", feed_server.url("/slow"), timeout=0.2)
