"""The database goes away under a running daemon: it says so once, answers 503, loses
nothing, and carries on by itself when the database is back."""

from __future__ import annotations

import signal
import time

import pytest
import yaml

from tests import pg
from tests.conftest import rss
from tests.integration.process import Output, start, wait_for
from tests.integration.test_operations import get
from tests.servers import Route, free_port


@pytest.fixture
def own_postgres(postgres):  # postgres: the same skip, or failure in CI, as the other tests
    servers = pg.start_server()
    yield next(servers)
    servers.close()


def test_postgresql_lost_while_running_pauses_and_resumes(
    tmp_path, feed_server, receiver, own_postgres
):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    listen = f"127.0.0.1:{free_port()}"
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": own_postgres.new_database(),
                    "listen": listen,
                    "interval": "1s",
                    "timeout": "2s",
                },
                "feeds": [{"url": feed_server.url("/feed.xml"), "name": "world"}],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
            }
        )
    )
    daemon = start(config)
    output = Output(daemon)
    try:
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 200, timeout=20)
        wait_for(lambda: len(feed_server.requests) >= 2)  # the baseline, then a plain poll

        own_postgres.stop()
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 503, timeout=20)
        assert "PostgreSQL 127.0.0.1:" in get(f"http://{listen}/healthz")[1]
        assert "watcher_database_up 0.0" in get(f"http://{listen}/metrics")[1]
        feed_server.routes["/feed.xml"] = Route(
            rss({"guid": "2", "title": "Istanbul talks"}, {"guid": "1", "title": "Old news"})
        )
        output.wait_for("polling paused: the database cannot be used")
        time.sleep(3)  # a few failed claims: they must not each log a line
        assert output.text.count("polling paused") == 1

        own_postgres.start()
        wait_for(lambda: receiver.requests, timeout=60)
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 200, timeout=20)
        output.wait_for("polling resumed after")
        assert [body["item"]["title"] for body in receiver.bodies()] == ["Istanbul talks"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        text = output.close()
    assert daemon.returncode == 0, text
    assert pg.PASSWORD not in text
    assert "Traceback" not in text


def test_postgresql_unreachable_at_start_is_one_clear_line(tmp_path, postgres):
    from tests.integration.process import run_refused

    port = free_port()
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": f"postgresql://watcher:{pg.PASSWORD}@127.0.0.1:{port}/w",
                    "listen": None,
                },
                "feeds": [{"url": "http://127.0.0.1:9/feed.xml", "name": "world"}],
            }
        )
    )
    result = run_refused(config)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach PostgreSQL at 127.0.0.1:{port}: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert pg.PASSWORD not in result.stderr + result.stdout


def test_a_deleted_sqlite_file_stops_polling_and_answers_503(tmp_path, feed_server, receiver):
    from tests.integration.process import daemon_config

    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    listen = f"127.0.0.1:{free_port()}"
    config = daemon_config(
        tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"), listen=listen
    )
    daemon = start(config)
    output = Output(daemon)
    try:
        wait_for(lambda: len(feed_server.requests) >= 2, timeout=20)
        (tmp_path / "w.db").unlink()
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 503, timeout=10)
        assert (
            "was deleted or replaced while watcher had it open"
            in get(f"http://{listen}/healthz")[1]
        )
        output.wait_for("polling paused: the database cannot be used: database ")
        polls = len(feed_server.requests)
        time.sleep(2.5)  # the feed is due every second
        assert len(feed_server.requests) <= polls + 1  # at most the poll in flight
        assert "watcher_database_up 0.0" in get(f"http://{listen}/metrics")[1]
        assert not (tmp_path / "w.db").exists()  # no new, empty database in its place
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        text = output.close()
    assert daemon.returncode == 0, text
