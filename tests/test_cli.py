from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import rss
from tests.servers import Route
from watcher.cli import main
from watcher.state import DatabaseLock

ROOT = Path(__file__).parent.parent


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.delenv("WATCHER_CONFIG", raising=False)
    monkeypatch.delenv("WATCHER_DB", raising=False)
    return CliRunner()


def write_config(tmp_path: Path, feed_url: str, **feed: object) -> Path:
    path = tmp_path / "watch.yaml"
    data = {
        "settings": {"database": str(tmp_path / "state" / "w.db"), "listen": None},
        "feeds": [{"url": feed_url, "name": "world", **feed}],
        "rules": [{"name": "talks", "query": '"Istanbul talks"', "notify": ["hook"]}],
        "notify": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_passes_on_the_shipped_config(runner):
    result = runner.invoke(main, ["check", "-c", str(ROOT / "config" / "watch.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK: 6 feeds, 3 rules, 3 notifiers" in result.output


def test_check_uses_watcher_config_env(runner, tmp_path, monkeypatch):
    path = write_config(tmp_path, "http://127.0.0.1:9/feed")
    monkeypatch.setenv("WATCHER_CONFIG", str(path))
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0
    assert result.output.startswith(f"{path}: OK: 1 feeds, 1 rules")


def test_check_on_a_broken_config_exits_2_naming_file_and_line(runner, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "feeds:\n  - url: https://example.org/rss\n    intervall: 5m\nrules:\n  - name: x\n    query: '(a'\n"
    )
    result = runner.invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}:3: feeds[0].intervall: unknown key 'intervall' (did you mean 'interval'?)"
        in result.output
    )
    assert f"{path}:6: rules[0].query: column 1: unbalanced parenthesis" in result.output


def test_unknown_command_is_a_usage_error(runner):
    assert runner.invoke(main, ["nope"]).exit_code == 2


def test_once_dry_run_prints_alerts_and_records_nothing(runner, tmp_path, feed_server):
    feed_server.routes["/feed.xml"] = Route(
        rss({"guid": "1", "title": "Istanbul talks resume", "link": "https://n.example.org/1"})
    )
    path = write_config(tmp_path, feed_server.url("/feed.xml"), backfill=True)
    result = runner.invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RULE", "NOTIFIER", "FEED", "TITLE", "LINK"]
    assert lines[1].split() == [
        "talks",
        "hook",
        "world",
        "Istanbul",
        "talks",
        "resume",
        "https://n.example.org/1",
    ]
    again = runner.invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert "talks" in again.stdout  # nothing was recorded by the first dry run


def test_once_exits_1_when_a_feed_fails(runner, tmp_path, feed_server):
    path = write_config(tmp_path, feed_server.url("/missing.xml"))
    result = runner.invoke(main, ["once", "-c", str(path)])
    assert result.exit_code == 1
    assert "world: failed: HTTP 404 Not Found" in result.stderr


def test_a_second_poller_on_the_same_database_is_refused(runner, tmp_path, feed_server):
    path = write_config(tmp_path, feed_server.url("/feed.xml"))
    lock = DatabaseLock(tmp_path / "state" / "w.db")
    lock.acquire()
    try:
        result = runner.invoke(main, ["once", "-c", str(path)])
    finally:
        lock.release()
    assert result.exit_code == 1
    assert "error: another watcher" in result.stderr


def test_demo_delivers_an_alert_offline(runner):
    result = runner.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert '"rule": "istanbul-talks"' in result.stdout
    assert "Rules that fired: istanbul-talks, peskov." in result.stdout
