from __future__ import annotations

import pickle

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.errors import FetchError, ParseError
from watcher.fetch import _DOT_SEGMENT, _PLAIN_URL, _prepared, fetch
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
    ("status", "message", "transient"),
    [
        (404, "HTTP 404 Not Found", False),
        (410, "the feed is gone", False),
        (403, "HTTP 403 Forbidden", False),
        (500, "HTTP 500", True),
        (429, "HTTP 429 Too Many Requests", True),
        (408, "HTTP 408 Request Timeout", True),
    ],
)
@responses.activate
def test_error_status_is_a_fetch_error(session, status, message, transient):
    responses.get(URL, status=status)
    with pytest.raises(FetchError, match=message) as caught:
        fetch(session, "world", URL)
    assert (caught.value.status, caught.value.transient) == (status, transient)
    assert caught.value.url == URL
    assert str(caught.value).startswith("feed world: ")


@responses.activate
def test_timeout_is_a_fetch_error(session):
    responses.get(URL, body=requests.ConnectTimeout("timed out: " + URL))
    with pytest.raises(FetchError, match=r"^feed f: timed out after 5s$") as caught:
        fetch(session, "f", URL, timeout=5)
    assert caught.value.transient


@responses.activate
def test_connection_error_message_is_short(session):
    responses.get(
        URL, body=requests.ConnectionError(f"HTTPConnectionPool: {URL} Connection refused")
    )
    with pytest.raises(FetchError, match=r"^feed f: connection refused$") as caught:
        fetch(session, "f", URL)
    assert caught.value.transient and caught.value.url == URL


@responses.activate
def test_a_certificate_that_fails_verification_is_not_transient(session):
    responses.get(URL, body=requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
    with pytest.raises(FetchError, match="TLS certificate verification failed") as caught:
        fetch(session, "f", URL)
    assert not caught.value.transient


@responses.activate
def test_oversized_response_is_cut_off(session):
    responses.get(URL, body=b"x" * 300_000)
    with pytest.raises(FetchError, match="larger than max_feed_size") as caught:
        fetch(session, "f", URL, max_size=100_000)
    assert not caught.value.transient and caught.value.url == URL


def test_slow_server_hits_the_deadline(feed_server):
    from tests.servers import Route

    feed_server.routes["/slow"] = Route(body=b"<rss/>", delay=0.6)
    with new_session("t") as session, pytest.raises(FetchError, match=r"timed out after 0\.2s"):
        fetch(session, "slow", feed_server.url("/slow"), timeout=0.2)


@responses.activate
def test_a_redirect_from_a_public_host_into_the_local_network_is_refused(session):
    for target in (
        "http://127.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
    ):
        responses.get(URL, status=302, headers={"Location": target})
        with pytest.raises(
            FetchError, match="redirect from a public address to a non-public one refused"
        ):
            fetch(session, "f", URL)
        responses.reset()


@responses.activate
def test_a_feed_configured_on_a_private_address_may_redirect_there(session):
    responses.get(
        "http://127.0.0.1:9/feed", status=301, headers={"Location": "http://127.0.0.2:9/feed"}
    )
    responses.get("http://127.0.0.2:9/feed", body=b"<rss/>")
    result = fetch(session, "f", "http://127.0.0.1:9/feed")
    assert result.moved_to == "http://127.0.0.2:9/feed"


@responses.activate
def test_redirects_to_other_schemes_and_too_many_redirects_are_refused(session):
    responses.get(URL, status=302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(FetchError, match=r"redirect to a non-http\(s\) URL refused \(file:\)"):
        fetch(session, "f", URL)
    responses.reset()
    for n in range(7):
        responses.get(
            f"http://feeds.example.org/{n}", status=307, headers={"Location": f"/{n + 1}"}
        )
    with pytest.raises(FetchError, match="more than 5 redirects"):
        fetch(session, "f", "http://feeds.example.org/0")


@responses.activate
def test_a_temporary_redirect_is_not_a_move_and_a_downgrade_is_flagged(session):
    responses.get(
        "https://feeds.example.org/a",
        status=302,
        headers={"Location": "http://feeds.example.org/b"},
    )
    responses.get("http://feeds.example.org/b", body=b"<rss/>")
    result = fetch(session, "f", "https://feeds.example.org/a")
    assert result.moved_to is None
    assert result.downgraded
    assert result.url == "http://feeds.example.org/b"


@responses.activate
def test_retry_after_of_a_503_is_kept(session):
    responses.get(URL, status=503, headers={"Retry-After": "120"})
    with pytest.raises(FetchError) as caught:
        fetch(session, "f", URL)
    assert (caught.value.retry_after, caught.value.transient) == (120, True)


@responses.activate
def test_a_refused_redirect_names_the_url_that_redirected(session):
    responses.get(URL, status=302, headers={"Location": "ftp://feeds.example.org/x"})
    with pytest.raises(FetchError, match="non-http") as caught:
        fetch(session, "f", URL)
    assert (caught.value.url, caught.value.transient) == (URL, False)


def test_a_fetch_error_crosses_a_process_whole():
    """Parses run in a process pool: the error comes back with every part."""
    error = ParseError("f", "not valid JSON", url=URL, status=200, retry_after=3.0)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ParseError and str(copy) == "feed f: not valid JSON"
    assert (copy.url, copy.status, copy.transient, copy.retry_after) == (URL, 200, False, 3.0)


def test_proxies_come_from_the_environment_once_per_host(monkeypatch):
    from watcher.http import _proxies, proxies_for

    _proxies.cache_clear()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    monkeypatch.setenv("NO_PROXY", "intranet.example.org")
    try:
        assert (
            proxies_for("https://feeds.example.org/a")["https"] == "http://proxy.example.org:3128"
        )
        assert "https" not in proxies_for("https://intranet.example.org/feed")
    finally:
        _proxies.cache_clear()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/", "http://a..b/", f"http://{'a' * 64}.org/", "http://[::1/"]
)
def test_a_url_that_cannot_be_requested_is_a_fetch_error(session, url):
    with pytest.raises(FetchError, match=r"^feed f: invalid URL$"):
        fetch(session, "f", url)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://127.0.0.1:99999/x", "port 99999 is out of range (1-65535)"),
        ("http://me:pw@127.0.0.1:9/x", "it contains credentials (user:password@)"),
        ("//127.0.0.1:9\\@example.org/x", "its host part contains a backslash"),
        ("http://a..b/x", "invalid host name"),
    ],
)
def test_a_redirect_to_a_url_that_cannot_be_requested_is_refused(
    session, feed_server, location, message
):
    from tests.servers import Route

    feed_server.routes["/feed.xml"] = Route(status=301, location=location)
    with pytest.raises(FetchError) as caught:
        fetch(session, "f", feed_server.url("/feed.xml"))
    assert caught.value.reason == f"redirect refused: {message}"


def test_credentials_the_user_configured_are_kept_on_a_relative_redirect(session, feed_server):
    from tests.servers import Route

    feed_server.routes["/a.xml"] = Route(status=302, location="/b.xml")
    feed_server.routes["/b.xml"] = Route(b"<rss/>")
    url = feed_server.url("/a.xml").replace("http://", "http://me:pw@")
    assert fetch(session, "f", url).body == b"<rss/>"
    assert feed_server.requests[-1].headers["Authorization"] == "Basic bWU6cHc="


URL_TEXT = st.text(alphabet="aZ09.-_~/!$&'()*+,;=:?@#%[] é", max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]),
    host=st.sampled_from(["news.example.org", "News.example.org", "127.0.0.1", "*.x", "ex-1.org."]),
    port=st.sampled_from(["", ":80", ":0080", ":8080", ":99999", ":"]),
    path=URL_TEXT,
)
def test_a_url_taken_as_it_is_is_one_requests_prepares_unchanged(
    scheme: str, host: str, port: str, path: str
):
    """The shortcut past requests' URL preparation takes only URLs it would leave alone."""
    url = f"{scheme}://{host}{port}/{path}"
    try:
        prepared = requests.Request("GET", url, headers={"Accept": "*/*"}).prepare()
    except requests.RequestException:
        assert not _PLAIN_URL.fullmatch(url) or _DOT_SEGMENT.search(url)
        return
    taken = _prepared(url, {"Accept": "*/*"})
    assert (taken.method, taken.url, dict(taken.headers), taken.body) == (
        prepared.method,
        prepared.url,
        dict(prepared.headers),
        prepared.body,
    )
