"""Several ``watcher run`` processes on one PostgreSQL share the work: each feed is polled
about once per interval in all, each alert is delivered once, and when one process is
killed the others take over its feeds and deliveries once its leases run out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import yaml

from tests.conftest import rss
from tests.integration.process import Output, wait_for
from tests.pg import PASSWORD
from tests.servers import Route, free_port

FEEDS = 40
INTERVAL = 5


def feed(index: int, *stories: int) -> bytes:
    items = [{"guid": f"{index}-old", "title": "Old news"}]
    items += [{"guid": f"{index}-{n}", "title": f"Istanbul talks {index}.{n}"} for n in stories]
    return rss(*reversed(items))


def metric(listen: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def start(config: Path, listen: str) -> tuple[subprocess.Popen[str], Output]:
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WATCHER_LISTEN": listen},
    )
    return process, Output(process)


def test_three_processes_share_the_feeds_and_deliver_each_alert_once(
    tmp_path, feed_server, receiver, postgres_url
):
    for index in range(FEEDS):
        feed_server.routes[f"/f{index}.xml"] = Route(feed(index))
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": postgres_url,
                    "listen": "${WATCHER_LISTEN}",
                    "interval": f"{INTERVAL}s",
                    "timeout": "2s",
                },
                "feeds": [
                    {"url": feed_server.url(f"/f{i}.xml"), "name": f"f{i}"} for i in range(FEEDS)
                ],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
            }
        )
    )
    listens = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    processes = [start(config, listen) for listen in listens]
    try:
        polled = lambda: {r.path for r in feed_server.requests}  # noqa: E731
        wait_for(lambda: len(polled()) == FEEDS, timeout=30)  # every baseline taken

        before = len(feed_server.requests)
        time.sleep(2 * INTERVAL)
        window = Counter(r.path for r in feed_server.requests[before:])
        assert set(window) == {f"/f{i}.xml" for i in range(FEEDS)}
        assert max(window.values()) <= 3, window  # about once per interval, not three times
        polls = [metric(listen, "watcher_polls_total") for listen in listens]
        assert all(count > 0 for count in polls), polls  # every process does a share
        status = subprocess.run(
            [sys.executable, "-m", "watcher", "status", "-c", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "WATCHER_LISTEN": "127.0.0.1:9"},
        )
        assert "daemons:   3 running" in status.stdout, status.stdout + status.stderr
        pids = {str(process.pid) for process, _ in processes}
        lines = status.stdout.splitlines()
        header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["HOST", "PID"])
        listed = [line.split() for line in lines[header + 1 : header + 4]]
        assert {row[1] for row in listed} == pids, status.stdout
        assert PASSWORD not in status.stdout + status.stderr

        for index in range(FEEDS):
            feed_server.routes[f"/f{index}.xml"] = Route(feed(index, 1))
        wait_for(lambda: len(receiver.requests) >= FEEDS, timeout=30)
        time.sleep(INTERVAL)  # time for a second delivery, if one were made
        titles = [body["item"]["title"] for body in receiver.bodies()]
        assert sorted(titles) == sorted(f"Istanbul talks {i}.1" for i in range(FEEDS))

        victim, victim_output = processes.pop(0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        victim_output.close()
        killed_at = time.monotonic()
        for index in range(FEEDS):
            feed_server.routes[f"/f{index}.xml"] = Route(feed(index, 1, 2))
        wait_for(lambda: len({b["item"]["title"] for b in receiver.bodies()}) >= 2 * FEEDS, 60)
        taken_over = time.monotonic() - killed_at
        bodies = receiver.bodies()
        ids_by_title: dict[str, set[str]] = {}
        for body in bodies:
            ids_by_title.setdefault(body["item"]["title"], set()).add(body["delivery_id"])
        assert all(len(ids) == 1 for ids in ids_by_title.values())  # repeats keep their id
        repeats = len(bodies) - len(ids_by_title)
        assert repeats <= 2, repeats  # at most the alerts in flight at the kill
        assert taken_over < 30 + 10 + 15  # the notifier lease, a delivery tick, and slack
    finally:
        for process, _ in processes:
            process.send_signal(signal.SIGTERM)
        for process, output in processes:
            try:
                process.wait(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
            text = output.close()
            assert PASSWORD not in text
    for process, _ in processes:
        assert process.returncode == 0
