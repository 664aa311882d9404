"""Running ``watcher run`` as a real process in tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def daemon_config(
    tmp_path: Path, feed_url: str, hook_url: str, listen: str | None = None, **hook: Any
) -> Path:
    """One feed polled every second, one rule (Istanbul), one webhook."""
    config = tmp_path / "watch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "database": str(tmp_path / "w.db"),
                    "listen": listen,
                    "interval": "1s",
                },
                "feeds": [{"url": feed_url, "name": "world"}],
                "rules": [{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": hook_url, **hook}},
            }
        )
    )
    return config


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
