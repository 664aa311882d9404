from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import rss
from tests.servers import Route
from watcher.cli import main
from watcher.state import DatabaseLock, open_store

ROOT = Path(__file__).parent.parent


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.delenv("WATCHER_CONFIG", raising=False)
    monkeypatch.delenv("WATCHER_DB", raising=False)
    return CliRunner()


def write_config(tmp_path: Path, feed_url: str, **feed: object) -> Path:
    path = tmp_path / "watch.yaml"
    data = {
        "settings": {"database": str(tmp_path / "state" / "w.db"), "listen": None},
        "feeds": [{"url": feed_url, "name": "world", **feed}],
        "rules": [{"name": "talks", "query": '"Istanbul talks"', "notify": ["hook"]}],
        "notify": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_passes_on_the_shipped_config(runner):
    result = runner.invoke(main, ["check", "-c", str(ROOT / "config" / "watch.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK: 6 feeds, 3 rules, 3 notifiers" in result.output


def test_check_uses_watcher_config_env(runner, tmp_path, monkeypatch):
    path = write_config(tmp_path, "http://127.0.0.1:9/feed")
    monkeypatch.setenv("WATCHER_CONFIG", str(path))
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0
    assert result.output == (
        f"{path}: OK: 1 feed, 1 rule, 1 notifier\ndatabase: {tmp_path / 'state' / 'w.db'}\n"
    )


def test_check_on_a_broken_config_exits_2_naming_file_and_line(runner, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "feeds:\n  - url: https://example.org/rss\n    intervall: 5m\nrules:\n  - name: x\n    query: '(a'\n"
    )
    result = runner.invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}:3: feeds[0].intervall: unknown key 'intervall' (did you mean 'interval'?)"
        in result.output
    )
    assert f"{path}:6: rules[0].query: column 1: unbalanced parenthesis" in result.output


def test_unknown_command_is_a_usage_error(runner):
    assert runner.invoke(main, ["nope"]).exit_code == 2


def test_once_dry_run_prints_alerts_and_records_nothing(runner, tmp_path, feed_server):
    feed_server.routes["/feed.xml"] = Route(
        rss({"guid": "1", "title": "Istanbul talks resume", "link": "https://n.example.org/1"})
    )
    path = write_config(tmp_path, feed_server.url("/feed.xml"), backfill=True)
    result = runner.invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RULE", "NOTIFIER", "FEED", "TITLE", "LINK"]
    assert lines[1].split() == [
        "talks",
        "hook",
        "world",
        "Istanbul",
        "talks",
        "resume",
        "https://n.example.org/1",
    ]
    again = runner.invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert "talks" in again.stdout  # nothing was recorded by the first dry run


def test_once_exits_1_when_a_feed_fails(runner, tmp_path, feed_server):
    path = write_config(tmp_path, feed_server.url("/missing.xml"))
    result = runner.invoke(main, ["once", "-c", str(path)])
    assert result.exit_code == 1
    assert "world: failed: HTTP 404 Not Found" in result.stderr


def test_once_says_the_baseline_once_and_counts_in_the_singular(runner, tmp_path, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    path = write_config(tmp_path, feed_server.url("/feed.xml"))
    dry = runner.invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert dry.exit_code == 0, dry.output
    assert dry.stderr.count("baseline") == 1
    assert "world: first poll, 1 item would be kept as a baseline (not alerted)" in dry.stderr
    result = runner.invoke(main, ["once", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("baseline") == 1
    assert "feed world: first poll, 1 item stored as a baseline (not alerted)" in result.stderr
    assert result.stdout == "1 feed polled, 0 alerts queued; 0 sent, 0 to retry, 0 dead\n"


def test_check_prints_the_config_warnings(runner, tmp_path):
    path = write_config(tmp_path, "https://example.org/rss")
    data = yaml.safe_load(path.read_text())
    data["feeds"].append({"url": "https://example.org/rss", "name": "again"})
    data["rules"][0]["query"] = "Peskov and Istanbul"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    warnings = result.stderr.splitlines()
    assert any(
        line.startswith(f"warning: {path}:")
        and "feeds[1].url: feed 'again' has the same URL" in line
        for line in warnings
    )
    assert any(
        "rules[0].query: column 8: rule 'talks' searches 'and' as a word: did you mean AND?" in line
        for line in warnings
    )


def test_a_second_poller_on_the_same_database_is_refused(runner, tmp_path, feed_server):
    path = write_config(tmp_path, feed_server.url("/feed.xml"))
    lock = DatabaseLock(tmp_path / "state" / "w.db")
    lock.acquire()
    try:
        result = runner.invoke(main, ["once", "-c", str(path)])
    finally:
        lock.release()
    assert result.exit_code == 1
    assert "error: another watcher" in result.stderr


def test_demo_delivers_an_alert_offline(runner):
    result = runner.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert '"rule": "istanbul-talks"' in result.stdout
    assert "Rules that fired: istanbul-talks, peskov." in result.stdout


def test_test_rule_on_text_is_grep_like(runner):
    hit = runner.invoke(
        main,
        ["test-rule", '"Istanbul talks" OR Peskov', "--text", "New Istanbul talks, Peskóv says"],
    )
    assert hit.exit_code == 0, hit.output
    assert hit.stdout.splitlines() == [
        "matched: Istanbul talks, Peskov",
        "New [Istanbul] [talks], [Peskóv] says",
    ]
    miss = runner.invoke(main, ["test-rule", "Peskov", "--text", "Peskovich"])
    assert (miss.exit_code, miss.stdout) == (1, "no match\n")
    bad = runner.invoke(main, ["test-rule", "Istanbul talks)", "--text", "x"])
    assert bad.exit_code == 2
    assert bad.stderr == "error: query: column 15: unbalanced parenthesis\n"


def test_test_rule_needs_a_query_or_a_rule(runner):
    assert runner.invoke(main, ["test-rule", "--text", "x"]).exit_code == 2


@pytest.fixture
def polled(runner, tmp_path, feed_server):
    """A database holding one poll of a feed with a story, alerted to a dead notifier."""
    feed_server.routes["/feed.xml"] = Route(
        rss(
            {"guid": "1", "title": "Istanbul talks resume", "link": "https://n.example.org/1"},
            {"guid": "2", "title": "Award season", "link": "https://n.example.org/2"},
        )
    )
    path = write_config(tmp_path, feed_server.url("/feed.xml"), backfill=True)
    runner.invoke(main, ["once", "-c", str(path)])
    return path


def test_test_rule_backtests_stored_items(runner, polled):
    result = runner.invoke(main, ["test-rule", "award*", "-c", str(polled)])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["SEEN", "FEED", "MATCHED", "TITLE"]
    assert row.split()[2:] == ["UTC", "world", "award*", "[Award]", "season"]
    by_rule = runner.invoke(main, ["test-rule", "--rule", "talks", "--json", "-c", str(polled)])
    assert by_rule.exit_code == 0
    assert [r["title"] for r in json.loads(by_rule.stdout)] == ["Istanbul talks resume"]
    none = runner.invoke(main, ["test-rule", "ceasefire", "-c", str(polled)])
    assert none.exit_code == 1
    unknown = runner.invoke(main, ["test-rule", "--rule", "nope", "-c", str(polled)])
    assert unknown.exit_code == 2 and "no rule named 'nope' (known: talks)" in unknown.stderr


def test_matches_lists_recent_matches_with_deliveries(runner, polled):
    result = runner.invoke(main, ["matches", "--json", "-c", str(polled)])
    assert result.exit_code == 0, result.output
    (match,) = json.loads(result.stdout)
    assert (match["rule"], match["title"], match["matched"]) == (
        "talks",
        "Istanbul talks resume",
        ["Istanbul talks"],
    )
    assert match["deliveries"] == {"hook": "pending"}
    table_output = runner.invoke(main, ["matches", "--rule", "talks", "-c", str(polled)]).stdout
    assert table_output.splitlines()[1].split()[2:6] == ["UTC", "talks", "world", "hook:pending"]
    none = runner.invoke(main, ["matches", "--rule", "talks", "--since", "0s", "-c", str(polled)])
    assert (none.exit_code, none.stdout) == (0, "no matches\n")


def test_matches_of_an_unknown_rule_is_refused_naming_the_known_ones(runner, polled):
    result = runner.invoke(main, ["matches", "--rule", "tlaks", "-c", str(polled)])
    assert result.exit_code == 2
    assert (
        "no rule named 'tlaks' in the config, and no match of it in the last 1d "
        "(did you mean 'talks'? known: talks)"
    ) in result.stderr


def test_matches_of_a_rule_gone_from_the_config_are_shown_with_a_warning(runner, polled):
    data = yaml.safe_load(polled.read_text())
    data["rules"][0]["name"] = "renamed"
    polled.write_text(yaml.safe_dump(data))
    result = runner.invoke(main, ["matches", "--rule", "talks", "-c", str(polled)])
    assert result.exit_code == 0
    assert result.stderr == "warning: rule 'talks' is no longer in the config\n"
    assert "Istanbul talks resume" in result.stdout


def test_test_rule_on_an_unknown_feed_is_refused_naming_the_known_ones(runner, polled):
    result = runner.invoke(main, ["test-rule", "award*", "--feed", "wrld", "-c", str(polled)])
    assert result.exit_code == 2
    assert (
        "no feed named 'wrld' in the config nor in the database "
        "(did you mean 'world'? known: world)"
    ) in result.stderr
    known = runner.invoke(main, ["test-rule", "award*", "--feed", "world", "-c", str(polled)])
    assert known.exit_code == 0 and "Award" in known.stdout


def test_search_speaks_the_rule_query_language(runner, polled):
    result = runner.invoke(main, ["search", "istanb* -award", "-c", str(polled)])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["SEEN", "FEED", "TITLE", "LINK"]
    assert row.split()[3:] == ["world", "Istanbul", "talks", "resume", "https://n.example.org/1"]
    query = "title:season OR talks NEAR/1 Istanbul"
    found = runner.invoke(main, ["search", query, "--json", "-c", str(polled)])
    assert [(r["title"], r["matched"]) for r in json.loads(found.stdout)] == [
        ("Istanbul talks resume", ["talks", "Istanbul"]),
        ("Award season", ["season"]),
    ]
    assert runner.invoke(main, ["search", "nothing", "-c", str(polled)]).exit_code == 1
    bad = runner.invoke(main, ["search", '"unclosed', "-c", str(polled)])
    assert bad.exit_code == 2 and bad.stderr == "error: query: column 1: unclosed quote\n"


def test_import_opml_prints_the_feeds_yaml(runner):
    result = runner.invoke(
        main, ["import-opml", str(ROOT / "tests" / "data" / "subscriptions.opml")]
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == {
        "feeds": [
            {"url": "https://feeds.bbci.co.uk/news/world/rss.xml", "name": "bbc-world"},
            {"url": "https://meduza.io/rss/en/all", "name": "meduza"},
        ]
    }


def test_import_opml_refuses_entities(runner, tmp_path):
    path = tmp_path / "evil.opml"
    path.write_text('<!DOCTYPE o [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><body/></opml>')
    result = runner.invoke(main, ["import-opml", str(path)])
    assert result.exit_code == 1 and "not a readable OPML file" in result.stderr


def test_discover_lists_the_feeds_of_a_page_or_says_it_is_a_feed(runner, feed_server):
    feed_server.routes["/page"] = Route(
        b'<html><head><link rel="alternate" type="application/rss+xml" title="World" href="/world.rss"></head></html>',
        content_type="text/html",
    )
    feed_server.routes["/world.rss"] = Route(rss({"guid": "1", "title": "x"}, title="World news"))
    page = runner.invoke(main, ["discover", feed_server.url("/page")])
    assert page.exit_code == 0, page.output
    assert page.stdout.splitlines()[1].split() == [feed_server.url("/world.rss"), "World"]
    feed = runner.invoke(main, ["discover", feed_server.url("/world.rss")])
    assert feed.stdout == f"{feed_server.url('/world.rss')} is a feed: World news, 1 item\n"
    feed_server.routes["/plain"] = Route(b"<html><body>hi</body></html>", content_type="text/html")
    assert runner.invoke(main, ["discover", feed_server.url("/plain")]).exit_code == 1


def test_feeds_lists_status_per_feed(runner, tmp_path, feed_server):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    path = write_config(tmp_path, feed_server.url("/feed.xml"))
    runner.invoke(main, ["once", "-c", str(path)])
    after = json.loads(runner.invoke(main, ["feeds", "--json", "-c", str(path)]).stdout)
    assert (after[0]["name"], after[0]["status"], after[0]["items"], after[0]["failures"]) == (
        "world",
        "ok",
        1,
        0,
    )
    feed_server.routes["/feed.xml"] = Route(b"", status=500)
    text = write_config(tmp_path, feed_server.url("/missing.xml"))
    runner.invoke(main, ["once", "-c", str(text)])
    listing = runner.invoke(main, ["feeds", "-c", str(text)]).stdout.splitlines()
    assert listing[1].split()[:2] == ["world", "failing"]
    assert "HTTP 404 Not Found" in listing[1]


def test_feeds_shows_the_next_poll_in_utc_or_due_and_the_whole_last_error(
    runner, tmp_path, feed_server
):
    advertised = feed_server.url("/news/" + "world-" * 12 + "rss.xml")
    feed_server.routes["/page"] = Route(
        f'<html><head><link rel="alternate" type="application/rss+xml" href="{advertised}">'
        "</head></html>".encode(),
        content_type="text/html",
    )
    path = write_config(tmp_path, feed_server.url("/page"))
    runner.invoke(main, ["once", "-c", str(path)])
    header, row = runner.invoke(main, ["feeds", "-c", str(path)]).stdout.splitlines()
    assert header.split() == [
        "FEED",
        "STATUS",
        "LAST",
        "SUCCESS",
        "FAILURES",
        "NEXT",
        "POLL",
        "ITEMS",
        "LAST",
        "ERROR",
    ]
    assert re.match(r"world +failing +- +1 +\d{4}-\d\d-\d\d \d\d:\d\d UTC +0 +the URL", row)
    assert row.endswith(f"the page names these feeds: {advertised}")
    (record,) = json.loads(runner.invoke(main, ["feeds", "--json", "-c", str(path)]).stdout)
    assert record["next_poll"] == record["next_try"] is not None

    store = open_store(tmp_path / "state" / "w.db")
    past = datetime.now(UTC) - timedelta(hours=1)
    store.record_unchanged("world", feed_server.url("/page"), past, next_poll=past)
    store.close()
    row = runner.invoke(main, ["feeds", "-c", str(path)]).stdout.splitlines()[1]
    assert re.match(r"world +ok +\d{4}-\d\d-\d\d \d\d:\d\d UTC +0 +due +0 +-$", row)


def test_status_shows_daemon_database_feeds_outbox_and_alerts(runner, polled, tmp_path):
    result = runner.invoke(main, ["status", "-c", str(polled)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "daemon:    not running"
    assert lines[1].startswith(f"database:  {tmp_path / 'state' / 'w.db'} (") and lines[1].endswith(
        ", 2 items)"
    )
    assert lines[2] == "feeds:     1 (1 ok)"
    assert lines[3] == "outbox:    1 pending"
    assert lines[4] == "last alerts:"
    assert lines[5].split() == ["DETECTED", "RULE", "DELIVERIES", "TITLE"]
    assert re.fullmatch(
        r"  \d{4}-\d\d-\d\d \d\d:\d\d UTC  talks  hook:pending  Istanbul talks resume", lines[6]
    )
    assert lines[6].index("talks") == lines[5].index("RULE")
    assert lines[6].index("hook:pending") == lines[5].index("DELIVERIES")
    lock = DatabaseLock(tmp_path / "state" / "w.db")
    lock.acquire()
    try:
        running = runner.invoke(main, ["status", "-c", str(polled)]).stdout.splitlines()[0]
    finally:
        lock.release()
    assert running == f"daemon:    running (pid {os.getpid()})"


HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u2028"


def test_no_feed_given_text_reaches_the_terminal_raw(runner, tmp_path, feed_server):
    """A feed's link and title with terminal escapes (OSC, CSI, C1 CSI, a line separator)
    are printed with their control characters filtered out, by every command."""
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "t",
        "items": [
            {
                "id": "1",
                "url": f"http://news.example/7{HOSTILE}",
                "title": f"Istanbul talks {HOSTILE} resume",
            }
        ],
    }
    feed_server.routes["/feed.json"] = Route(
        json.dumps(feed).encode(), content_type="application/feed+json"
    )
    path = write_config(tmp_path, feed_server.url("/feed.json"), backfill=True)
    outputs = [runner.invoke(main, ["once", "--dry-run", "-c", str(path)]).output]
    runner.invoke(main, ["once", "-c", str(path)])
    store = open_store(tmp_path / "state" / "w.db")
    store.record_unchanged(
        "world",
        feed_server.url("/feed.json"),
        datetime.now(UTC),
        moved_to=f"http://news.example/{HOSTILE}",
    )
    store.close()
    for command in (
        ["search", "istanbul"],
        ["search", "istanbul", "--json"],
        ["test-rule", "Istanbul"],
        ["test-rule", "Istanbul", "--json"],
        ["matches"],
        ["matches", "--json"],
        ["feeds"],
        ["feeds", "--json"],
        ["status"],
        ["deliveries"],
        ["deliveries", "--json"],
    ):
        result = runner.invoke(main, [*command, "-c", str(path)])
        assert result.exit_code in (0, 1), (command, result.output)
        outputs.append(result.output)
    printed = "\n".join(outputs)
    assert "Istanbul talks" in printed and "news.example/7" in printed and "moved to" in printed
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", printed)


def test_search_on_a_corrupt_database_says_so_without_a_traceback(runner, tmp_path):
    from watcher.models import Entry
    from watcher.state import NewItem

    path = write_config(tmp_path, "http://127.0.0.1:9/feed.xml")
    database = tmp_path / "state" / "w.db"
    store = open_store(database)
    items = tuple(NewItem(Entry(f"k{i}", title="Istanbul talks " * 50)) for i in range(100))
    now = datetime.now(UTC)
    store.ingest("world", "u", etag=None, last_modified=None, present=[], new_items=items, now=now)
    store.close()
    damaged = bytearray(database.read_bytes())
    damaged[3 * 4096 : 9 * 4096] = b"\xff" * 6 * 4096
    database.write_bytes(damaged)
    result = runner.invoke(main, ["search", "Istanbul", "-c", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: database {database}: ")
    assert "the file is damaged" in result.stderr and "Traceback" not in result.output


def test_every_command_works_against_postgresql_and_never_shows_its_password(
    runner, tmp_path, feed_server, postgres_url
):
    from tests.pg import PASSWORD

    feed_server.routes["/feed.xml"] = Route(
        rss(
            {"guid": "1", "title": "Istanbul talks resume", "link": "https://n.example.org/1"},
            {"guid": "2", "title": "Award season", "link": "https://n.example.org/2"},
        )
    )
    path = write_config(tmp_path, feed_server.url("/feed.xml"), backfill=True)
    data = yaml.safe_load(path.read_text())
    data["settings"]["database"] = postgres_url
    path.write_text(yaml.safe_dump(data))
    outputs = {}
    for command in (
        ["check"],
        ["once"],
        ["feeds", "--json"],
        ["matches", "--json"],
        ["search", "Istanbul"],
        ["test-rule", "award*"],
        ["deliveries", "--json"],
        ["retry"],
        ["status"],
    ):
        result = runner.invoke(main, [*command, "-c", str(path)])
        outputs[command[0]] = result
        assert PASSWORD not in result.output, command
    assert outputs["once"].exit_code == 1  # the webhook on port 9 refuses: the alert waits
    feeds = json.loads(outputs["feeds"].stdout)
    assert [(f["name"], f["status"], f["items"]) for f in feeds] == [("world", "ok", 2)]
    (match,) = json.loads(outputs["matches"].stdout)
    assert (match["title"], match["deliveries"]) == ("Istanbul talks resume", {"hook": "pending"})
    assert "Istanbul talks resume" in outputs["search"].stdout
    assert outputs["test-rule"].exit_code == 0 and "Award" in outputs["test-rule"].stdout
    (delivery,) = json.loads(outputs["deliveries"].stdout)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    status = outputs["status"].stdout
    assert "database:  postgresql://watcher:***@127.0.0.1:" in status
    assert "feeds:     1 (1 ok)" in status and "outbox:    1 pending" in status


@pytest.mark.parametrize(
    "command",
    [
        ["feeds"],
        ["status"],
        ["matches"],
        ["search", "x"],
        ["deliveries"],
        ["retry"],
        ["test-rule", "x"],
    ],
)
def test_commands_that_only_look_never_create_a_database(runner, tmp_path, command):
    path = write_config(tmp_path, "http://127.0.0.1:9/feed.xml")
    result = runner.invoke(main, [*command, "-c", str(path)])
    assert result.exit_code == 1
    database = tmp_path / "state" / "w.db"
    assert result.stderr == (
        f"error: no database at {database} yet: `watcher run` or `watcher once` makes it"
        " (settings.database names it)\n"
    )
    assert not (tmp_path / "state").exists()


def test_check_names_the_database_without_its_password(runner, tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9/feed")
    url = "postgresql://watcher:hunter2@db.example.org:5432/w"
    result = runner.invoke(main, ["check", "-c", str(path)], env={"WATCHER_DB": url})
    assert result.exit_code == 0, result.output
    assert "database: postgresql://watcher:***@db.example.org:5432/w" in result.stdout
    assert "hunter2" not in result.output


def test_a_cycle_that_parses_and_sends_nothing_imports_neither_parser_nor_templates():
    """Start-up is most of a 304 cycle: feedparser and jinja2 were a tenth of
    it, and are imported only when a body is parsed or a message rendered."""
    script = (
        "import sys, watcher.cli, watcher.cycle, watcher.config, watcher.notify;"
        "print(sorted({'feedparser', 'jinja2'} & set(sys.modules)))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert finished.stdout.strip() == "[]"
