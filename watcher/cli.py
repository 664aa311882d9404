"""The ``watcher`` command. Thin: parse arguments, call the modules, print, exit.

Exit codes: 0 success, 1 failure while running, 2 usage or config error.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from watcher import __version__, logs
from watcher.config import Config, config_path, load, parse_duration
from watcher.errors import ConfigError, QueryError, WatcherError
from watcher.links import safe_link, shown_url
from watcher.query import DEFAULT_FIELDS, parse
from watcher.records import delivery_record, feed_record, item_record, story_record
from watcher.rules import Matcher, Rule
from watcher.search import find
from watcher.state import (
    DatabaseLock,
    FeedState,
    Store,
    StoredStory,
    describe_database,
    is_postgres,
    open_store,
)
from watcher.text import highlight, one_line, plural

F = TypeVar("F", bound=Callable[..., Any])
PROCESS_SEEN = timedelta(minutes=2)
"""A daemon not heard from for this long is not listed as running."""
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")

TRANSLITERATE = click.option(
    "--transliterate/--no-transliterate",
    default=None,
    help="Match words in other scripts by their Latin spelling too (default: the config's).",
)
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
                click.echo(one_line(problem), err=True)
            sys.exit(2)
        except QueryError as exc:
            click.echo(f"error: query: {one_line(str(exc))}", err=True)
            sys.exit(2)
        except WatcherError as exc:
            click.echo(f"error: {one_line(str(exc))}", err=True)
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
    from watcher.cycle import run_once

    config = _load(config_file)
    logs.setup(config.settings.log_format)
    report = run_once(config, dry_run=dry_run)
    rows = []
    for outcome in report.outcomes:
        if outcome.status == "failed":
            click.echo(f"{outcome.feed}: failed: {one_line(outcome.error or '')}", err=True)
        elif dry_run and outcome.baseline and outcome.new:
            # a real poll logs its baseline; a dry run logs nothing, so it is said here
            click.echo(
                f"{outcome.feed}: first poll, {plural(outcome.new, 'item')} would be kept as a "
                "baseline (not alerted)",
                err=True,
            )
        for item in outcome.new_items:
            if not item.matches:
                continue
            title, link = one_line(item.entry.title)[:70], safe_link(item.entry.link)
            for match in item.matches:
                for notifier in match.notify or ("-",):
                    rows.append((match.rule, notifier, outcome.feed, title, link))
    if report.alerts is not None:  # a dry run on SQLite: only reports opening a story alert
        notify = {rule.name: rule.notify for rule in config.compiled_rules()}
        rows = [
            (alert.rule, notifier, alert.item.feed, title, safe_link(alert.item.entry.link))
            for alert in report.alerts
            for title in [one_line(alert.item.entry.title)[:70]]
            for notifier in notify.get(alert.rule) or ("-",)
        ]
    if dry_run:
        if rows:
            click.echo(table(("RULE", "NOTIFIER", "FEED", "TITLE", "LINK"), rows))
        else:
            click.echo("no alerts would be sent")
    else:
        delivery = report.delivery
        queued = sum(outcome.deliveries for outcome in report.outcomes)
        click.echo(
            f"{plural(len(report.outcomes), 'feed')} polled, {plural(queued, 'alert')} "
            f"queued; {delivery.sent} sent, {delivery.retrying} to retry, {delivery.dead} dead"
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
        f"{path}: OK: {plural(len(config.feeds), 'feed')}, {plural(len(config.rules), 'rule')}, "
        f"{plural(len(config.notify), 'notifier')}"
    )
    click.echo(f"database: {describe_database(config.settings.database)}")
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
    click.echo(
        f"The local webhook received {plural(len(result.received), 'alert')}. The first one:\n"
    )
    click.echo(_json(result.received[0]))
    rules = ", ".join(sorted({alert["rule"] for alert in result.received}))
    click.echo(f"\nRules that fired: {rules}. Edit config/watch.yaml and run `watcher run`.")


@main.command("test-rule")
@click.argument("query", required=False)
@click.option("--text", help="Match this text instead of the stored items.")
@click.option("--rule", "rule_name", metavar="NAME", help="Backtest a rule of the config.")
@click.option("--since", default="7d", show_default=True, help="Stored items seen this recently.")
@click.option("--feed", metavar="NAME", help="Only the items of this feed.")
@TRANSLITERATE
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@handle_errors
def test_rule(
    query: str | None,
    text: str | None,
    rule_name: str | None,
    since: str,
    feed: str | None,
    transliterate: bool | None,
    as_json: bool,
    config_file: str | None,
) -> None:
    """What QUERY (or --rule NAME) matches among stored items, or in TEXT.

    Like grep: exit 0 when something matched, 1 when nothing did, 2 for a bad query.
    """
    if (query is None) == (rule_name is None):
        raise click.UsageError("give either a QUERY or --rule NAME")
    config = _load(config_file) if rule_name or text is None else None
    rule = _rule(query, rule_name, config, transliterate)
    matcher = Matcher([rule])
    if text is not None:
        found = matcher.match(dict.fromkeys(DEFAULT_FIELDS, text), "text")
        if as_json:
            click.echo(_json([{"matched": list(m.terms)} for m in found]))
        elif found:
            click.echo(f"matched: {', '.join(found[0].terms)}")
            click.echo(highlight(text, found[0].words, _bold, str))
        else:
            click.echo("no match")
        sys.exit(0 if found else 1)
    assert config is not None
    tags = {feed_config.name: feed_config.tags for feed_config in config.feeds}
    rows = []
    with _store(config) as store:
        if feed is not None and feed not in tags and not store.item_count(feed):
            known = _known(feed, tags)
            message = f"no feed named {feed!r} in the config nor in the database ({known})"
            raise click.BadParameter(message, param_hint="--feed")
        for item in store.items_since(_ago(since), feed):
            entry = item.entry
            for match in matcher.match(entry.searchable(), item.feed, tags.get(item.feed, ())):
                rows.append((item, match))
    if as_json:
        click.echo(_json([item_record(item, match.terms) for item, match in rows]))
    elif rows:
        click.echo(
            table(
                ("SEEN", "FEED", "MATCHED", "TITLE"),
                [
                    (
                        _when(item.first_seen),
                        item.feed,
                        ", ".join(match.terms),
                        highlight(one_line(item.entry.title), match.words, _bold, str),
                    )
                    for item, match in rows
                ],
            )
        )
    else:
        click.echo(f"nothing matched among the items seen in the last {since}")
    sys.exit(0 if rows else 1)


@main.command()
@click.option("--rule", "rule_name", metavar="NAME", help="Only this rule's matches.")
@click.option("--since", default="1d", show_default=True, help="Matches this recent.")
@click.option("--limit", default=100, show_default=True, help="At most this many stories.")
@click.option(
    "--story",
    "story_id",
    type=click.IntRange(1, 2**63 - 1),
    metavar="ID",
    help="Only this story's reports.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@handle_errors
def matches(
    rule_name: str | None,
    since: str,
    limit: int,
    story_id: int | None,
    as_json: bool,
    config_file: str | None,
) -> None:
    """Recent matches, by story: the latest reported first, each story's first report (the
    one that alerted, with the state of its deliveries), then the reports grouped into it."""
    config = _load(config_file)
    with _store(config) as store:
        if story_id is not None:
            story = store.story(story_id)
            if story is None:
                raise click.BadParameter(
                    f"no story {story_id} in the database", param_hint="--story"
                )
            found = [story]
        else:
            found = store.stories(_ago(since), rule_name, limit)
    if rule_name is not None and rule_name not in {rule.name for rule in config.rules}:
        if not found:
            known = _known(rule_name, [rule.name for rule in config.rules])
            message = (
                f"no rule named {rule_name!r} in the config, and no match of it in the last "
                f"{since} ({known})"
            )
            raise click.BadParameter(message, param_hint="--rule")
        click.echo(f"warning: rule {rule_name!r} is no longer in the config", err=True)
    if as_json:
        click.echo(_json([story_record(story) for story in found]))
        return
    rows = [
        (
            _when(report.detected_at),
            report.rule,
            report.item.feed,
            (", ".join(report.deliveries) or "-") if index == 0 else "grouped",
            str(story.id),
            one_line(report.item.entry.title),
        )
        for story in found
        for index, report in enumerate(story.reports)
    ]
    headers = ("DETECTED", "RULE", "FEED", "DELIVERIES", "STORY", "TITLE")
    click.echo(table(headers, rows) if rows else "no matches")


@main.command()
@click.argument("query")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="At most this many."
)
@TRANSLITERATE
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@handle_errors
def search(
    query: str, limit: int, transliterate: bool | None, as_json: bool, config_file: str | None
) -> None:
    """Stored items matching QUERY, newest first. QUERY is in the rule query language:
    words, "phrases", prefix*, AND, OR, NOT or -, NEAR/n, field:, /regex/.

    Exit 0 when something was found, 1 when nothing was, 2 for a bad query.
    """
    node = parse(query)
    config = _load(config_file)
    with _store(config) as store:
        if transliterate is None:
            transliterate = config.settings.transliterate
        result = find(store, node, limit, transliterate=transliterate)
    if as_json:
        click.echo(_json([item_record(f.item, f.match.terms) for f in result.found]))
    elif result.found:
        rows = [
            (
                _when(f.item.first_seen),
                f.item.feed,
                one_line(f.item.entry.title),
                safe_link(f.item.entry.link),
            )
            for f in result.found
        ]
        click.echo(table(("SEEN", "FEED", "TITLE", "LINK"), rows))
    else:
        click.echo("nothing found")
    if not result.complete:
        click.echo(
            f"searched only the newest {result.examined:,} items that could match;"
            " older ones were not read",
            err=True,
        )
    if not result.found:
        sys.exit(1)


@main.command()
@config_option
@handle_errors
def status(config_file: str | None) -> None:
    """One screen: is a daemon running, the database, the feeds, the outbox, the last alerts."""
    config = _load(config_file)
    now = datetime.now(UTC)
    with _store(config) as store:
        states = store.feed_states()
        outbox = store.delivery_counts()
        recent = store.stories(now - timedelta(days=7), limit=5)
        items = sum(store.item_counts().values())
        size = store.size()
        processes = store.processes(now - PROCESS_SEEN)
        database = store.description
    health: dict[str, int] = {}
    for feed in config.feeds:
        state = states.get(feed.name) or FeedState(feed.name)
        health[state.status] = health.get(state.status, 0) + 1
    if is_postgres(config.settings.database):
        click.echo(f"daemons:   {len(processes) or 'none'} running")
    else:
        holder = DatabaseLock(config.settings.database).holder()
        click.echo(f"daemon:    {f'running (pid {holder})' if holder else 'not running'}")
    click.echo(
        f"database:  {database} ({size / 1e6:.1f} MB, {items:,} item{'' if items == 1 else 's'})"
    )
    feeds_line = ", ".join(f"{count} {name}" for name, count in sorted(health.items()))
    click.echo(f"feeds:     {len(config.feeds)} ({feeds_line or 'none'})")
    outbox_line = ", ".join(f"{count} {name}" for name, count in sorted(outbox.items()))
    click.echo(f"outbox:    {outbox_line or 'empty'}")
    if processes:
        click.echo("processes:")
        rows = [
            (
                p.host,
                str(p.pid),
                _when(p.started_at),
                _when(p.last_seen),
                str(p.feeds),
                str(p.notifiers),
            )
            for p in processes
        ]
        headers = ("HOST", "PID", "STARTED", "LAST SEEN", "FEEDS HELD", "NOTIFIERS HELD")
        click.echo(_indented(table(headers, rows)))
    if not recent:
        click.echo("last alerts: none in the last 7 days")
        return
    click.echo("last alerts:")
    alerts = [
        (
            _when(match.detected_at),
            match.rule,
            ", ".join(match.deliveries) or "- (no notifier)",
            one_line(match.item.entry.title)[:70] + _more_reports(story),
        )
        for story in recent
        for match in story.reports[:1]
    ]
    click.echo(_indented(table(("DETECTED", "RULE", "DELIVERIES", "TITLE"), alerts)))


def _more_reports(story: StoredStory) -> str:
    more = len(story.reports) - 1
    return f" (+{plural(more, 'report')})" if more else ""


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@handle_errors
def feeds(as_json: bool, config_file: str | None) -> None:
    """One row per configured feed: status, last success, failures, last error, items."""
    config = _load(config_file)
    with _store(config) as store:
        states = store.feed_states()
        counts = store.item_counts()
    records: list[dict[str, Any]] = []
    rows: list[tuple[str, ...]] = []
    now = datetime.now(UTC)
    for feed in config.feeds:
        state = states.get(feed.name) or FeedState(feed.name)
        items = counts.get(feed.name, 0)
        records.append(feed_record(feed.name, feed.url, state, items))
        # In full: it is the last column, so its length moves no other; and its end is
        # often what helps (the feeds an HTML page advertises).
        error = one_line(state.last_error or "")
        if state.moved_to:
            error = f"{error} (moved to {shown_url(state.moved_to)})".strip()
        seen = _when(state.last_success) if state.last_success else "-"
        rows.append(
            (
                feed.name,
                state.status,
                seen,
                str(state.failures),
                _next_poll(state, now),
                str(items),
                error or "-",
            )
        )
    if as_json:
        click.echo(_json(records))
        return
    headers = ("FEED", "STATUS", "LAST SUCCESS", "FAILURES", "NEXT POLL", "ITEMS", "LAST ERROR")
    click.echo(table(headers, rows) if rows else "no feeds")


def _next_poll(state: FeedState, now: datetime) -> str:
    """When the feed is polled next: ``due`` when that time has come (a daemon polls it
    now, or would if one ran), ``-`` when it never is (gone) or is not scheduled yet."""
    if state.gone or state.next_poll is None:
        return "-"
    return "due" if state.next_poll <= now else _when(state.next_poll)


@main.command()
@click.option("--failed", is_flag=True, help="Only dead deliveries and failing ones.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@handle_errors
def deliveries(failed: bool, limit: int, as_json: bool, config_file: str | None) -> None:
    """The outbox, newest first: what was sent, what waits for a retry, what is dead."""
    config = _load(config_file)
    with _store(config) as store:
        found = store.deliveries(failed=failed, limit=limit)
    if as_json:
        click.echo(_json([delivery_record(d) for d in found]))
        return
    rows = [
        (
            str(d.id),
            d.status,
            d.notifier,
            d.rule,
            str(d.attempts),
            _when(d.sent_at or d.next_attempt or d.created_at),
            one_line(d.last_error or "-")[:60],
            one_line(d.title)[:60],
        )
        for d in found
    ]
    headers = ("ID", "STATUS", "NOTIFIER", "RULE", "TRIES", "SENT/NEXT", "LAST ERROR", "TITLE")
    click.echo(table(headers, rows) if rows else "no deliveries")


@main.command()
@click.argument("ids", nargs=-1, type=int)
@config_option
@handle_errors
def retry(ids: tuple[int, ...], config_file: str | None) -> None:
    """Requeue dead deliveries: those with the given IDs, or all of them."""
    config = _load(config_file)
    with _store(config) as store:
        count = store.requeue(ids, datetime.now(UTC))
    click.echo(
        f"{plural(count, 'dead delivery', 'dead deliveries')} requeued; "
        "the daemon sends them on its next pass"
    )
    if ids and count < len(ids):
        wrong = len(ids) - count
        verb = "is not a dead delivery" if wrong == 1 else "are not dead deliveries"
        click.echo(f"{wrong} of the IDs given {verb}", err=True)
        sys.exit(1)


@main.command()
@click.argument("url")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for the request.")
@handle_errors
def discover(url: str, timeout: float) -> None:
    """The feeds a web page advertises (or whether URL is a feed itself)."""
    from watcher.fetch import fetch
    from watcher.http import new_session
    from watcher.parse import feed_links, parse_feed

    with new_session(f"watcher/{__version__}") as session:
        result = fetch(session, url, url, timeout=timeout)
    try:
        parsed = parse_feed(url, result.body, result.headers, result.url)
    except WatcherError:
        links = feed_links(result.body, result.url)
        if not links:
            click.echo(f"{url} advertises no feed", err=True)
            sys.exit(1)
        rows = [(safe_link(link), one_line(title) or "-") for link, title in links]
        click.echo(table(("FEED", "TITLE"), rows))
        return
    click.echo(
        f"{safe_link(result.url)} is a feed: {parsed.title or '(untitled)'}, "
        f"{plural(len(parsed.entries), 'item')}"
    )


@main.command("import-opml")
@click.argument("file", type=click.Path(dir_okay=False))
@handle_errors
def import_opml(file: str) -> None:
    """Print the feeds: YAML for an OPML subscription list (from any feed reader)."""
    from watcher.opml import feeds_yaml, read_opml

    found = read_opml(file)
    if not found:
        click.echo(f"{file} lists no feed", err=True)
        sys.exit(1)
    click.echo(feeds_yaml(found), nl=False)


def _rule(
    query: str | None, rule_name: str | None, config: Config | None, transliterate: bool | None
) -> Rule:
    if query is not None:
        if transliterate is None:
            transliterate = config is not None and config.settings.transliterate
        return Rule("query", parse(query), transliterate=transliterate)
    assert config is not None
    for rule in config.compiled_rules():
        if rule.name == rule_name:
            return rule if transliterate is None else replace(rule, transliterate=transliterate)
    known = _known(rule_name or "", [rule.name for rule in config.rules])
    raise click.BadParameter(f"no rule named {rule_name!r} ({known})", param_hint="--rule")


KNOWN_LISTED = 20
"""Names an error about an unknown one lists at most (a config may have thousands)."""


def _known(name: str, known: Collection[str]) -> str:
    """The names there are, for an error about one that is not: the closest first."""
    if not known:
        return "known: none"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(sorted(known)[:KNOWN_LISTED])
    more = f" and {len(known) - KNOWN_LISTED} more" if len(known) > KNOWN_LISTED else ""
    return f"{hint}known: {listed}{more}"


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    """The database of a command that only looks (or requeues): never a new one."""
    store = open_store(config.settings.database, create=False)
    try:
        yield store
    finally:
        store.close()


def _ago(since: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc


def _when(moment: datetime) -> str:
    """A time as tables show it, in UTC and saying so."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _bold(word: str) -> str:
    """A matched word: in bold on a terminal, in brackets in a pipe or a file."""
    return click.style(word, bold=True) if sys.stdout.isatty() else f"[{word}]"


def _json(value: Any) -> str:
    """JSON with letters of every script as they are, but the C1 controls and line separators
    escaped like the C0 ones, so that no feed text can drive a terminal."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of text aligned under their headers (the last column is not padded)."""
    every = [headers, *rows]
    widths = [max(map(len, column)) for column in zip(*every, strict=True)][:-1]
    line = "  ".join(f"{{:<{width}}}" for width in widths) + "  {}"
    return "\n".join(line.format(*row).rstrip() for row in every)
