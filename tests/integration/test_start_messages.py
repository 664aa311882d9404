"""What the daemon says when it starts: counts in words a person reads ("1 feed"), and when
the first polls come, so that a daemon waiting for them does not look idle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from watcher.config import load
from watcher.daemon import Daemon


def start_and_stop(tmp_path: Path, feeds: int) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "settings": {"database": str(tmp_path / "w.db"), "listen": None},
                "feeds": [
                    {"url": f"http://127.0.0.1:9/{i}", "name": f"f{i}"} for i in range(feeds)
                ],
                "rules": [{"name": "r", "query": "Peskov", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
            }
        )
    )
    daemon = Daemon(load(path))
    daemon.start()
    daemon.stop()


@pytest.fixture
def messages(caplog) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="watcher.daemon")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "watcher.daemon"]


def test_the_start_line_counts_in_the_singular_and_says_when_polls_come(tmp_path, messages):
    start_and_stop(tmp_path, 1)
    started = next(m for m in messages() if m.startswith("watcher started: "))
    assert started.startswith("watcher started: 1 feed, 1 rule, 1 notifier, database ")
    assert "first polls: 1 feed due now" in messages()


def test_the_start_says_the_first_polls_are_spread_over_the_interval(tmp_path, messages):
    start_and_stop(tmp_path, 12)
    assert "first polls: 1 feed due now, 11 spread over the next 5min" in messages()
