"""watcher against rss2email 3.14 and feed2exec on the same local feeds, in the same run.

    python3 bench/bench_compare.py [FEEDS] [--one-host] [--runs N] [--tools watcher,rss2email]

FEEDS defaults to 1000. ``--one-host`` puts every feed on 127.0.0.1, so that watcher's
per-host limit (2 requests at once) is in force; otherwise feeds are spread over eight
loopback addresses. ``--runs`` repeats each tool's cycles, alternating the tools, and
prints every run, so the machine's noise shows.

Each tool runs as its users run it, one process per cycle: a cycle where every feed changed
(fresh state: every feed answers 200 with 50 new items), then an unchanged cycle (every feed
answers 304 to the validators it sent). rss2email hands each new item to ``sendmail``
(here /bin/true); feed2exec uses its null output; watcher polls and matches one rule. The
two other tools are installed by this script in bench/.venv-compare on first use.
Targets (DESIGN.md section 10): at least 5x faster than both on the changed cycle, 2x on
the unchanged one, also with every feed on one host.
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("feeds", nargs="?", type=int, default=1000)
    parser.add_argument("--one-host", action="store_true", help="every feed on 127.0.0.1")
    parser.add_argument("--runs", type=int, default=1, help="cycles per tool, alternating")
    parser.add_argument("--tools", default="watcher,rss2email,feed2exec")
    args = parser.parse_args()
    chosen = args.tools.split(",")
    bin_dir = tools()
    # as pip does when it installs a package: rss2email's and feed2exec's byte code was
    # compiled at install, watcher's editable install would compile at each start
    package = Path(__file__).parent.parent / "watcher"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    addresses = ADDRESSES[:1] if args.one_host else ADDRESSES
    servers = [Server((address, 0), Handler) for address in addresses]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    urls = [
        f"http://{addresses[n % len(addresses)]}:"
        f"{servers[n % len(addresses)].server_address[1]}/feed/{n}"
        for n in range(args.feeds)
    ]
    where = "one host (127.0.0.1)" if args.one_host else f"{len(addresses)} loopback addresses"
    print(f"{args.feeds} feeds of {len(Handler.body) / 1000:.0f} KB, 50 items each, on {where}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    setups = {"watcher": watcher, "rss2email": rss2email, "feed2exec": feed2exec}
    for run in range(args.runs):
        for name in chosen:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                command = setups[name](urls, work, bin_dir)
                Handler.honour_etag = False
                changed = timed(command, work)
                Handler.honour_etag = True
                unchanged = timed(command, work)
            results[name].append((changed, unchanged))
            print(
                f"  run {run + 1} {name:>9}: changed {changed:7.2f} s, "
                f"unchanged {unchanged:6.2f} s",
                flush=True,
            )
    ours = _median(results["watcher"])
    for name in chosen[1:] if chosen[0] == "watcher" else chosen:
        if name == "watcher":
            continue
        theirs = _median(results[name])
        print(
            f"  watcher vs {name} (medians): {theirs[0] / ours[0]:.1f}x faster changed "
            f"(target 5x), {theirs[1] / ours[1]:.1f}x unchanged (target 2x)"
        )
    for server in servers:
        server.shutdown()


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return (
        statistics.median(run[0] for run in runs),
        statistics.median(run[1] for run in runs),
    )


if __name__ == "__main__":
    main()
