"""The ``watcher`` command. Thin: parse arguments, call the modules, print, exit.

Exit codes: 0 success, 1 failure while running, 2 usage or config error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from watcher import __version__, logs
from watcher.config import Config, config_path, load
from watcher.errors import ConfigError, WatcherError
from watcher.notify.base import safe_link
from watcher.text import one_line

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "-c",
    "--config",
    "config_file",
    metavar="FILE",
    help="Config file (default: $WATCHER_CONFIG, then config/watch.yaml).",
)


def handle_errors(command: F) -> F:
    """Turn our errors into a message and an exit code; anything else is a bug to show."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(2)
        except WatcherError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _load(config_file: str | None) -> Config:
    return load(config_path(config_file))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="watcher")
def main() -> None:
    """Watch RSS/Atom feeds for stories matching your rules and alert Slack, email or webhooks."""


@main.command()
@config_option
@handle_errors
def run(config_file: str | None) -> None:
    """Run the daemon in the foreground (SIGTERM or SIGINT stops it cleanly)."""
    from watcher.daemon import Daemon

    config = _load(config_file)
    logs.setup(config.settings.log_format)
    Daemon(config).run_forever()


@main.command()
@config_option
@click.option(
    "--dry-run", is_flag=True, help="Print the alerts it would send; send and record nothing."
)
@handle_errors
def once(config_file: str | None, dry_run: bool) -> None:
    """Poll every feed once, make one delivery pass, and exit."""
    from watcher.daemon import run_once

    config = _load(config_file)
    logs.setup(config.settings.log_format)
    report = run_once(config, dry_run=dry_run)
    rows = []
    for outcome in report.outcomes:
        if outcome.status == "failed":
            click.echo(f"{outcome.feed}: failed: {outcome.error}", err=True)
        elif outcome.baseline and outcome.new_items:
            click.echo(
                f"{outcome.feed}: first poll, {len(outcome.new_items)} items kept as a baseline"
                " (not alerted)",
                err=True,
            )
        for item in outcome.new_items:
            for match in item.matches:
                for notifier in match.notify or ("-",):
                    rows.append(
                        (
                            match.rule,
                            notifier,
                            outcome.feed,
                            one_line(item.entry.title)[:70],
                            safe_link(item.entry.link),
                        )
                    )
    if dry_run:
        if rows:
            click.echo(table(("RULE", "NOTIFIER", "FEED", "TITLE", "LINK"), rows))
        else:
            click.echo("no alerts would be sent")
    else:
        delivery = report.delivery
        click.echo(
            f"{len(report.outcomes)} feeds polled, {len(rows)} alerts queued; "
            f"{delivery.sent} sent, {delivery.retrying} to retry, {delivery.dead} dead"
        )
    if report.failed:
        sys.exit(1)


@main.command()
@config_option
@handle_errors
def check(config_file: str | None) -> None:
    """Validate the config: a one-line summary, or every error with its file and line."""
    path = config_path(config_file)
    config = load(path)
    click.echo(
        f"{path}: OK: {len(config.feeds)} feeds, {len(config.rules)} rules, "
        f"{len(config.notify)} notifiers"
    )
    for warning in config.warnings():
        click.echo(f"warning: {warning}", err=True)


@main.command()
@handle_errors
def demo() -> None:
    """Offline demonstration: a sample feed served on loopback, two rules, the alert sent."""
    from watcher.demo import run_demo

    logs.setup("text")
    result = run_demo()
    click.echo("\nA sample feed was served on 127.0.0.1 and polled with this config:\n")
    click.echo(result.config_text)
    if not result.received:
        click.echo("No alert arrived: something is wrong; see the log lines above.", err=True)
        sys.exit(1)
    click.echo(f"The local webhook received {len(result.received)} alerts. The first one:\n")
    click.echo(json.dumps(result.received[0], indent=2, ensure_ascii=False))
    rules = ", ".join(sorted({alert["rule"] for alert in result.received}))
    click.echo(f"\nRules that fired: {rules}. Edit config/watch.yaml and run `watcher run`.")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows aligned under their headers."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)
