"""Resident memory of the daemon's pipeline with N configured feeds, after a full cycle
against a local server.

    python3 bench/bench_memory.py [FEEDS]        (default 10000)

The feeds answer 304 after a first full cycle (served by nginx when installed, else by
Python's http.server); the figure is the process's peak resident set. Target (DESIGN.md
section 10): under 250 MB for 10,000 feeds.
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_poll import nginx_servers, python_servers

from watcher.config import loads
from watcher.cycle import run_once


def main(count: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        use_nginx = shutil.which("nginx") is not None
        bases, stop = nginx_servers(Path(tmp)) if use_nginx else python_servers()
        try:
            path = "/cond/feed.xml" if use_nginx else "/feed/"
            feeds = [
                {"url": f"{bases[n % 8]}{path}?{n}", "name": f"feed-{n}"} for n in range(count)
            ]
            text = yaml.safe_dump(
                {
                    "settings": {"database": str(Path(tmp, "m.db")), "listen": None},
                    "feeds": feeds,
                    "rules": [{"name": "talks", "query": '"Istanbul talks" OR Peskov'}],
                }
            )
            config = loads(text, "bench", env={})
            for _ in range(2):
                run_once(config)
        finally:
            stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{count:,} feeds, two full cycles: peak resident memory {peak:,.0f} MB (target < 250 MB)"
    )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
