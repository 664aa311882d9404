from __future__ import annotations

import pytest

from watcher.links import safe_link


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
