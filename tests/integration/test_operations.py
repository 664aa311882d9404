"""The daemon as an operator sees it: /healthz, /metrics, a second daemon refused."""

from __future__ import annotations

import os
import signal
import urllib.request

from tests.conftest import rss
from tests.integration.process import Output, daemon_config, run_refused, start, wait_for
from tests.servers import Route, free_port
from watcher.state import open_store


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_health_and_metrics_and_a_second_daemon_refused(tmp_path, feed_server, receiver):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    listen = f"127.0.0.1:{free_port()}"
    config = daemon_config(
        tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"), listen=listen
    )
    daemon = start(config)
    try:
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 200)
        assert get(f"http://{listen}/healthz") == (200, "ok\n")
        wait_for(lambda: feed_server.requests)  # the baseline is taken before the story comes
        feed_server.routes["/feed.xml"] = Route(
            rss({"guid": "2", "title": "Istanbul talks"}, {"guid": "1", "title": "Old news"})
        )
        wait_for(lambda: receiver.requests)
        wait_for(
            lambda: (
                'watcher_deliveries_total{notifier="hook",result="sent"} 1.0'
                in get(f"http://{listen}/metrics")[1]
            )
        )
        metrics = get(f"http://{listen}/metrics")[1]
        assert 'watcher_polls_total{result="new"}' in metrics
        assert 'watcher_matches_total{rule="talks"} 1.0' in metrics
        assert 'watcher_outbox{status="sent"} 1.0' in metrics
        assert 'watcher_feed_consecutive_failures{feed="world"} 0.0' in metrics
        assert 'watcher_feed_last_success_timestamp_seconds{feed="world"}' in metrics
        assert "process_resident_memory_bytes" in metrics
        assert "watcher_parser_restarts_total 0.0" in metrics
        assert get(f"http://{listen}/nope")[0] == 404

        second = run_refused(config)
        assert second.returncode == 1
        assert "another watcher" in second.stderr and "is already polling" in second.stderr

        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, output
    assert f"health and metrics on http://{listen}/healthz" in output


def test_a_busy_listen_address_is_a_clear_error(tmp_path, feed_server, receiver):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        config = daemon_config(
            tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"), listen=listen
        )
        result = run_refused(config)
    assert result.returncode == 1
    assert f"error: cannot listen on {listen}: Address already in use" in result.stderr


def test_the_config_is_reloaded_when_edited_and_a_bad_edit_is_refused(
    tmp_path, feed_server, receiver
):
    import yaml

    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    feed_server.routes["/other.xml"] = Route(rss({"guid": "o1", "title": "Peskov speaks"}))
    config = daemon_config(tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"))
    daemon = start(config)
    output = Output(daemon)
    try:
        wait_for(lambda: feed_server.requests)
        data = yaml.safe_load(config.read_text())
        data["feeds"].append(
            {"url": feed_server.url("/other.xml"), "name": "other", "backfill": True}
        )
        data["rules"].append({"name": "peskov", "query": "Peskov", "notify": ["hook", "down"]})
        data["notify"]["down"] = {"type": "webhook", "url": receiver.url("/down")}
        receiver.planned_by_path["/down"] = [503] * 100  # an outage: that alert must wait
        config.write_text(yaml.safe_dump(data))
        wait_for(lambda: any(r.json()["rule"] == "peskov" for r in receiver.requests))
        output.wait_for("config reloaded: 2 feeds (1 added, 0 removed), 2 rules, 2 notifiers")

        config.write_text("feeds: [\n")  # a broken edit: refused, the daemon goes on
        daemon.send_signal(signal.SIGHUP)
        output.wait_for("config reload refused, the running config stays:")
        feed_server.routes["/feed.xml"] = Route(
            rss({"guid": "2", "title": "Istanbul talks"}, {"guid": "1", "title": "Old news"})
        )
        wait_for(lambda: any(r.json()["rule"] == "talks" for r in receiver.requests))
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = output.close()
    assert daemon.returncode == 0, text
    assert "YAML syntax error" in text
    assert receiver.bodies()[-1]["item"]["title"] == "Istanbul talks"  # the old config still ran
    store = open_store(tmp_path / "w.db")
    try:
        assert store.delivery_counts()["pending"] == 1  # the alert for "down" outlived the stop
    finally:
        store.close()


def test_scheduler_trouble_is_logged_and_counted(make_config, caplog):
    from datetime import UTC, datetime

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent

    from watcher.daemon import Daemon

    daemon = Daemon(make_config(feeds=[{"url": "http://127.0.0.1:9/feed", "name": "world"}]))
    try:
        moment = datetime.now(UTC)
        daemon._on_scheduler_event(
            JobExecutionEvent(EVENT_JOB_MISSED, "poll:world", "default", moment)
        )
        daemon._on_scheduler_event(
            JobExecutionEvent(
                EVENT_JOB_ERROR, "deliver", "default", moment, exception=ValueError("bug")
            )
        )
        metrics = daemon.metrics.text().decode()
    finally:
        daemon.pipeline.close()
        daemon.lock.release()
    assert 'watcher_scheduler_events_total{kind="missed"} 1.0' in metrics
    assert 'watcher_scheduler_events_total{kind="error"} 1.0' in metrics
    assert "job poll:world: run missed" in caplog.text
    assert "job deliver failed: ValueError('bug')" in caplog.text


def test_a_second_sigint_exits_at_once(tmp_path, feed_server, receiver):
    # the poll drips for about 15 s, well past the wait below: only exiting at once ends it
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "x"}), drip=0.05)
    config = daemon_config(tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"))
    daemon = start(config)
    output = Output(daemon)
    try:
        wait_for(lambda: feed_server.requests)  # a slow poll is in flight
        output.wait_for("watcher started")
        daemon.send_signal(signal.SIGINT)
        output.wait_for("stopping: waiting for polls and deliveries in flight")
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=5)  # raises if the slow poll were waited for
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = output.close()
    assert daemon.returncode == 1
    assert "second SIGINT: exiting at once; unsent alerts stay pending" in text


def test_scrapes_leave_no_open_files_behind(tmp_path, feed_server, receiver):
    """Each /healthz and /metrics request runs on a thread of its own: the database
    connection that thread opened is closed once it ended (400 scrapes once left 401)."""
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Old news"}))
    listen = f"127.0.0.1:{free_port()}"
    config = daemon_config(
        tmp_path, feed_server.url("/feed.xml"), receiver.url("/hook"), listen=listen
    )
    daemon = start(config)
    output = Output(daemon)
    try:
        wait_for(lambda: get(f"http://{listen}/healthz")[0] == 200)
        for _ in range(20):
            get(f"http://{listen}/metrics")
        before = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        for _ in range(500):
            assert get(f"http://{listen}/metrics")[0] == 200
            assert get(f"http://{listen}/healthz")[0] == 200
        after = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        assert after <= before + 5, (before, after)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        output.close()
