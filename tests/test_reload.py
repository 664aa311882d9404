"""Reloading the config: only a file that stopped changing is applied, an empty one is
refused, and edited templates take effect."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from watcher.config import load
from watcher.daemon import Daemon
from watcher.notify import templates


def config_text(tmp_path: Path, feeds: int, template: str | None = None) -> str:
    hook = {"type": "slack", "url": "http://127.0.0.1:9/hook"}
    if template:
        hook["template"] = template
    return yaml.safe_dump(
        {
            "settings": {"database": str(tmp_path / "w.db"), "listen": None},
            "feeds": [{"url": f"http://127.0.0.1:9/{i}", "name": f"f{i}"} for i in range(feeds)],
            "rules": [{"name": "r", "query": "Peskov", "notify": ["hook"]}],
            "notify": {"hook": hook},
        }
    )


@pytest.fixture
def daemon(tmp_path):
    path = tmp_path / "watch.yaml"
    (tmp_path / "alert.j2").write_text("first {{ title }}")
    path.write_text(config_text(tmp_path, 1, "alert.j2"))
    running = Daemon(load(path))
    yield running
    running.pipeline.close()
    running.lock.release()


def test_a_file_is_applied_only_once_it_stopped_changing(daemon, tmp_path, caplog):
    path = tmp_path / "watch.yaml"
    full = config_text(tmp_path, 3, "alert.j2")
    path.write_text(full[: len(full) // 2])  # an editor halfway through writing it
    daemon._watch_config()
    path.write_text(full)
    daemon._watch_config()
    assert len(daemon.config.feeds) == 1
    with caplog.at_level(logging.INFO):
        daemon._watch_config()
    assert len(daemon.config.feeds) == 3
    assert "reload refused" not in caplog.text


def test_an_emptied_file_is_refused_and_the_running_config_stays(daemon, tmp_path, caplog):
    (tmp_path / "watch.yaml").write_text("")
    with caplog.at_level(logging.INFO):
        daemon.reload()
    assert "config reload refused, the running config stays: " in caplog.text
    assert "the config is empty" in caplog.text
    assert len(daemon.config.feeds) == 1


def test_an_edited_template_takes_effect(daemon, tmp_path, caplog):
    template = tmp_path / "alert.j2"
    template.write_text("second {{ title }}, longer")
    with caplog.at_level(logging.INFO):
        daemon._watch_config()
        daemon._watch_config()
    assert "config reloaded" in caplog.text
    notifier = daemon.pipeline.notifiers["hook"]
    assert notifier.template.render(title="t").startswith("second t")
    assert templates.load("x", "text", path=str(template)).render(title="t") == "second t, longer"


def test_deliveries_of_a_removed_notifier_die_at_reload_and_come_back_with_retry(
    daemon, tmp_path, caplog
):
    from datetime import UTC, datetime

    from watcher.models import Entry
    from watcher.rules import Match
    from watcher.state import NewItem

    store = daemon.pipeline.store
    match = Match("r", ("Peskov",), ("hook",))
    store.ingest(
        "f0",
        "http://127.0.0.1:9/0",
        etag=None,
        last_modified=None,
        present=["a"],
        new_items=[NewItem(Entry("a", title="Peskov"), (match,))],
        now=datetime.now(UTC),
    )
    data = yaml.safe_load((tmp_path / "watch.yaml").read_text())
    data["notify"] = {}
    data["rules"][0]["notify"] = []
    (tmp_path / "watch.yaml").write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING):
        daemon.reload()
    assert "1 pending deliveries marked dead, notifier removed from the config: hook" in caplog.text
    (dead,) = store.deliveries(failed=True)
    assert (dead.status, dead.last_error) == ("dead", "notifier removed from the config")
    assert store.requeue([], datetime.now(UTC)) == 1  # `watcher retry`, once it is back


def test_a_claimed_feed_not_in_the_config_is_put_off_not_claimed_again_at_once(daemon):
    from datetime import UTC, datetime, timedelta

    from watcher.state import ScheduledFeed

    store = daemon.pipeline.store
    now = datetime.now(UTC)
    store.sync_feeds([ScheduledFeed("ghost", "http://127.0.0.1:9/g", timedelta(1), now)], now)
    assert store.claim_feeds(daemon.process.id, now, 10, timedelta(minutes=1)) == ["ghost"]
    daemon._poll("ghost")
    assert store.claim_feeds(daemon.process.id, now + timedelta(seconds=30), 10, timedelta(1)) == []
    assert store.feed_state("ghost").next_poll >= now + timedelta(minutes=1)
