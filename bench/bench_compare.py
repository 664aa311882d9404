"""watcher against rss2email 3.14 and feed2exec on the same local feeds, in the same run.

    python3 bench/bench_compare.py [FEEDS]        (default 1000)

Each tool runs as its users run it, one process per cycle: a cycle where every feed changed
(fresh state: every feed answers 200 with 50 new items), then an unchanged cycle (every feed
answers 304 to the validators it sent). rss2email hands each new item to ``sendmail``
(here /bin/true); feed2exec uses its null output; watcher polls and matches one rule. The
two other tools are installed by this script in bench/.venv-compare on first use.
Targets (DESIGN.md section 10): at least 5x faster than both on the changed cycle, 1.5x on
the unchanged one.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_poll import ADDRESSES, Handler, Server

VENV = Path(__file__).parent / ".venv-compare"


def tools() -> Path:
    """The virtual environment holding rss2email and feed2exec, made on first use."""
    if not (VENV / "bin" / "feed2exec").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "pip"), "install", "-q", "rss2email==3.14", "feed2exec"]
        subprocess.run(pip, check=True)
    return VENV / "bin"


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def rss2email(urls: list[str], work: Path, bin_dir: Path) -> list[str]:
    sections = [f"[feed.f{n}]\nurl = {url}\n" for n, url in enumerate(urls)]
    (work / "r2e.cfg").write_text(
        "[DEFAULT]\nto = desk@example.org\nemail-protocol = sendmail\nsendmail = /bin/true\n"
        "feed-timeout = 30\n\n" + "\n".join(sections)
    )
    return [str(bin_dir / "r2e"), "-c", "r2e.cfg", "-d", "r2e.json", "run"]


def feed2exec(urls: list[str], work: Path, bin_dir: Path) -> list[str]:
    sections = [
        f"[f{n}]\nurl = {url}\noutput = feed2exec.plugins.null\n" for n, url in enumerate(urls)
    ]
    (work / "f2e.ini").write_text("\n".join(sections))
    return [str(bin_dir / "feed2exec"), "--config", "f2e.ini", "--database", "f2e.db", "fetch"]


def watcher(urls: list[str], work: Path, bin_dir: Path) -> list[str]:
    config = {
        "settings": {"database": str(work / "watcher.db"), "listen": None},
        "feeds": [{"url": url, "name": f"f{n}"} for n, url in enumerate(urls)],
        "rules": [{"name": "talks", "query": '"Istanbul talks" OR Peskov'}],
    }
    (work / "watch.yaml").write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "watcher", "once", "-c", "watch.yaml"]


def main(count: int = 1000) -> None:
    bin_dir = tools()
    servers = [Server((address, 0), Handler) for address in ADDRESSES]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    urls = [
        f"http://{ADDRESSES[n % 8]}:{servers[n % 8].server_address[1]}/feed/{n}"
        for n in range(count)
    ]
    print(f"{count} feeds of {len(Handler.body) / 1000:.0f} KB, 50 items each, on loopback")
    results: dict[str, tuple[float, float]] = {}
    for name, setup in (("watcher", watcher), ("rss2email", rss2email), ("feed2exec", feed2exec)):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            command = setup(urls, work, bin_dir)
            Handler.honour_etag = False
            changed = timed(command, work)
            Handler.honour_etag = True
            unchanged = timed(command, work)
        results[name] = (changed, unchanged)
        print(f"  {name:>9}: changed {changed:7.2f} s, unchanged {unchanged:6.2f} s", flush=True)
    ours = results["watcher"]
    for name in ("rss2email", "feed2exec"):
        theirs = results[name]
        print(
            f"  watcher vs {name}: {theirs[0] / ours[0]:.1f}x faster changed (target 5x), "
            f"{theirs[1] / ours[1]:.1f}x unchanged (target 1.5x)"
        )
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
