"""``watcher run`` as a real process: polls on schedule, alerts at once, stops on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import rss
from tests.integration.process import daemon_config, start, wait_for
from tests.servers import Route


def test_daemon_alerts_new_items_and_stops_cleanly(tmp_path: Path, feed_server, receiver):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    process = start(daemon_config(tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook")))
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
