from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.links import safe_link, shown_url
from watcher.state.base import ScheduledFeed

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        ("https://news.example.org/a?b=1#c", "https://news.example.org/a?b=1#c"),
        ("javascript:alert(1)", ""),
        ("data:text/html,x", ""),
        ("https://user:pa55@news.example.org/feed", "https://news.example.org/feed"),
        ("http://news.example/7\x1b]0;PWNED\x07", "http://news.example/7%1B]0;PWNED%07"),
        ("  http://news.example/a b  ", "http://news.example/a%20b"),
    ],
)
def test_safe_link(link, shown):
    assert safe_link(link) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://x.example/rss?key=abc&lang=en", "https://x.example/rss?key=***&lang=en"),
        ("https://u:pw@x.example/rss?api_key=1", "https://x.example/rss?api_key=***"),
        (
            "https://x.example/f?token=t&sig=s&page=2",
            "https://x.example/f?token=***&sig=***&page=2",
        ),
        ("https://x.example/f?access_token=z", "https://x.example/f?access_token=***"),
        (
            "https://x.example/f?monkey=1&keyword=k&key=",
            "https://x.example/f?monkey=1&keyword=k&key=",
        ),
        ("https://x.example/rss", "https://x.example/rss"),
        ("javascript:alert(1)", ""),
    ],
)
def test_a_feed_url_is_shown_without_its_secrets(url, shown):
    assert shown_url(url) == shown


def test_the_feeds_api_and_page_show_a_feed_url_without_its_token(db):
    from tests.test_web import client

    url = "https://paid.example/rss?token=s3cr3t-t0ken&lang=en"
    db.sync_feeds([ScheduledFeed("paid", url, timedelta(minutes=5), NOW)], NOW)
    web = client(db)
    assert "s3cr3t-t0ken" not in web.get("/api/feeds").text
    page = web.get("/feeds/paid").text
    assert "token=***&amp;lang=en" in page and "s3cr3t-t0ken" not in page
