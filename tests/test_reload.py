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
