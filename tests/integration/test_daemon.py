"""``watcher run`` as a real process: polls on schedule, alerts at once, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import rss
from tests.servers import Route


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_daemon_alerts_new_items_and_stops_cleanly(tmp_path: Path, feed_server, receiver):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {"database": str(tmp_path / "w.db"), "listen": None, "interval": "1s"},
                "feeds": [{"url": feed_server.url("/feed.xml"), "name": "world"}],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(feed_server.requests) >= 1)  # the baseline poll
        feed_server.routes["/feed.xml"] = Route(
            rss({"guid": "2", "title": "Istanbul talks"}, {"guid": "1", "title": "Old news"})
        )
        wait_for(lambda: receiver.requests)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert [r.json()["item"]["title"] for r in receiver.requests] == ["Istanbul talks"]
    assert "alert sent: rule talks, notifier hook" in output
    assert "received SIGTERM" in output and "stopped" in output
