"""Running ``watcher run`` as a real process in tests."""

from __future__ import annotations

import subprocess
import sys
import threading
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


def gone(pid: int) -> bool:
    """Whether a process is dead (a zombie not yet reaped counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before, or while, it was read
        return True


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


def run_refused(config: Path) -> subprocess.CompletedProcess[str]:
    """``watcher run`` expected to refuse to start: it returns instead of running on."""
    command = [sys.executable, "-m", "watcher", "run", "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


class Output:
    """Collects a process's output as it comes, so that a test can wait for a log line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, fragment: str) -> None:
        wait_for(lambda: fragment in self.text)

    def close(self) -> str:
        self._thread.join(timeout=10)
        self._stream.close()
        return self.text
