"""Run a snippet of Python in a fresh interpreter with a time and memory limit, for tests that
show an input is handled in linear time and bounded memory: a regression then fails in
seconds, where in-process it would hold the GIL for minutes or exhaust the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bounded(code: str, *, seconds: float = 30.0, memory: int = 1 << 30) -> str:
    """Run ``code`` (with this checkout's ``watcher`` importable) and return what it printed;
    fail the test if it runs longer than ``seconds`` or fails, e.g. for want of ``memory``
    bytes of address space."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
    path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", limit + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=seconds,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {seconds:g}s (not linear?)") from None
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
