from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from watcher.config import derive_feed_name, load, loads, parse_duration, parse_rate, parse_size
from watcher.errors import ConfigError

ROOT = Path(__file__).parent.parent

VALID = """\
settings:
  interval: 2m
feeds:
  - url: https://example.org/world/rss.xml
    name: world
    tags: [russia]
rules:
  - name: talks
    query: '"Istanbul talks" OR Peskov'
    notify: [hook]
notify:
  hook:
    type: webhook
    url: https://hooks.example.org/x
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loads(text, "watch.yaml", env=env or {})
    return caught.value.problems


def test_shipped_config_is_valid_without_any_environment():
    config = load(ROOT / "config" / "watch.yaml", env={})
    assert len(config.feeds) >= 3
    assert {rule.name for rule in config.rules} >= {"istanbul-talks", "peskov"}
    assert set(config.disabled_notifiers()) == set(config.notify)


def test_shipped_config_enables_notifiers_from_the_environment():
    env = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X", "SMTP_HOST": "mail"}
    config = load(ROOT / "config" / "watch.yaml", env=env)
    assert config.disabled_notifiers() == ["ops-hook"]
    assert config.notify["slack-desk"].url.get_secret_value().endswith("/X")
    assert "hooks.slack.com" not in repr(config.notify["slack-desk"])


def test_defaults_and_values():
    config = loads(VALID, "watch.yaml", env={})
    assert config.settings.interval == timedelta(minutes=2)
    assert config.settings.timeout == timedelta(seconds=30)
    assert config.settings.max_feed_size == 10_000_000
    assert config.settings.retry.first == timedelta(seconds=30)
    assert config.feed_interval(config.feeds[0]) == timedelta(minutes=2)
    assert config.rules[0].notify == ("hook",)


def test_config_objects_are_immutable():
    config = loads(VALID, "watch.yaml", env={})
    with pytest.raises(ValueError):
        config.settings.interval = timedelta(seconds=1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        (45, 45),
        ("1.5h", 5400),
        ("250ms", 0.25),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "size"), [("10MB", 10**7), ("512KB", 512_000), ("1MiB", 2**20), (100, 100)]
)
def test_sizes(value, size):
    assert parse_size(value) == size


def test_rates():
    assert parse_rate("20/min").count == 20
    assert parse_rate("1/s").period == timedelta(seconds=1)
    with pytest.raises(ValueError):
        parse_rate("fast")


def test_feed_name_derived_from_url():
    assert derive_feed_name("https://www.example.org/world/rss.xml") == "example.org-world"
    config = loads(VALID.replace("    name: world\n", ""), "watch.yaml", env={})
    assert config.feeds[0].name == "example.org-world"


def test_env_interpolation_with_and_without_default():
    text = VALID.replace("https://hooks.example.org/x", "${HOOK_URL}")
    text = text.replace("interval: 2m", "interval: ${INTERVAL:-7m}")
    config = loads(text, "watch.yaml", env={"HOOK_URL": "https://h.example.org/secret"})
    assert config.settings.interval == timedelta(minutes=7)
    assert config.notify["hook"].url.get_secret_value() == "https://h.example.org/secret"


def test_unset_env_variable_is_named_with_its_line():
    text = VALID.replace("https://hooks.example.org/x", "${HOOK_URL}")
    assert problems(text) == [
        "watch.yaml:14: notify.hook.url: environment variable HOOK_URL is not set "
        "(set it, or write ${HOOK_URL:-default})"
    ]


def test_dollar_dollar_escapes_interpolation():
    text = VALID.replace("Peskov'", "Peskov' # $${NOT_A_VAR}")
    assert loads(text, "watch.yaml", env={}).rules[0].query == '"Istanbul talks" OR Peskov'


def test_watcher_db_environment_overrides_database():
    config = loads(VALID, "watch.yaml", env={"WATCHER_DB": "/tmp/other.db"})
    assert config.settings.database == "/tmp/other.db"


def test_every_error_reported_at_once_with_file_line_and_path():
    text = """\
settings:
  interval: 5 minutes
  concurency: 3
feeds:
  - url: ftp://example.org/feed
  - url: https://example.org/a
    name: a
  - url: https://example.org/b
    name: a
rules:
  - name: talks
    query: '(Istanbul talks'
    notify: [slak-desk]
  - name: only-not
    query: '-football'
  - nme: typo
notify:
  slack-desk: {type: slack, url: "https://hooks.slack.com/x"}
  pager: {type: pagerduty}
  mail: {type: email, to: [a@example.org], from: w@example.org, host: smtp, port: 99999}
"""
    assert problems(text) == [
        "watch.yaml:2: settings.interval: invalid duration '5 minutes' (use e.g. 30s, 5m, 2h, 1d)",
        "watch.yaml:3: settings.concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
        "watch.yaml:5: feeds[0].url: must be an http:// or https:// URL",
        "watch.yaml:9: feeds[2].name: duplicate feed name 'a' (names must be unique; set name: on one)",
        "watch.yaml:12: rules[0].query: column 1: unbalanced parenthesis",
        "watch.yaml:13: rules[0].notify[0]: unknown notifier 'slak-desk' (known: mail, pager, slack-desk)",
        "watch.yaml:14: rules[1]: the rule has only exclusions; it needs a term that must be present",
        "watch.yaml:16: rules[2]: missing required key 'name'",
        "watch.yaml:16: rules[2].nme: unknown key 'nme' (did you mean 'name'?)",
        "watch.yaml:19: notify.pager.type: unknown notifier type 'pagerduty' (known: apprise, discord, email, slack, webhook)",
        "watch.yaml:20: notify.mail.port: input should be less than or equal to 65535",
    ]


def test_yaml_syntax_error_names_the_line():
    (problem,) = problems("feeds:\n  - url: [unclosed\n")
    assert problem.startswith("watch.yaml:3: YAML syntax error: ")
    assert "',' or ']'" in problem


def test_duplicate_keys_are_errors():
    text = VALID.replace(
        "settings:\n  interval: 2m\n", "settings:\n  interval: 2m\n  interval: 3m\n"
    )
    assert problems(text) == ["watch.yaml:3: settings.interval: duplicate key 'interval'"]


def test_unknown_top_level_key():
    assert problems(VALID + "rulez: []\n") == [
        "watch.yaml:15: rulez: unknown key 'rulez' (did you mean 'rules'?)"
    ]


def test_rule_scope_must_name_known_feeds_or_tags():
    text = VALID.replace(
        "    notify: [hook]", "    feeds: [wrld, 'tag:nope', 'tag:russia']\n    notify: [hook]"
    )
    assert problems(text) == [
        "watch.yaml:10: rules[0].feeds[0]: unknown feed 'wrld' (did you mean 'world'?)",
        "watch.yaml:10: rules[0].feeds[1]: no feed has tag 'nope'",
    ]


def test_rule_without_terms_is_an_error():
    text = VALID.replace("    query: '\"Istanbul talks\" OR Peskov'\n", "")
    assert problems(text) == ["watch.yaml:8: rules[0]: a rule needs a query or any/all lists"]


def test_structured_rule_with_only_none_is_an_error():
    text = VALID.replace("    query: '\"Istanbul talks\" OR Peskov'", "    none: [football]")
    assert problems(text) == [
        "watch.yaml:8: rules[0]: the rule has only exclusions; it needs a term that must be present"
    ]


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(tmp_path / "absent.yaml")


def test_warnings_for_disabled_notifiers():
    text = VALID.replace("url: https://hooks.example.org/x", "url: ''")
    assert loads(text, "watch.yaml", env={}).warnings() == [
        "notifiers disabled (empty url or host): hook; their rules only log matches"
    ]


def test_disabled_notifiers_are_left_out_of_compiled_rules():
    text = VALID.replace("url: https://hooks.example.org/x", "url: ''")
    assert loads(text, "watch.yaml", env={}).compiled_rules()[0].notify == ()


def test_bad_structured_entry_is_named():
    text = VALID.replace("    query: '\"Istanbul talks\" OR Peskov'", "    any: [Peskov, '!!!']")
    assert problems(text) == ["watch.yaml:9: rules[0].any[1]: term '!!!' has no letters or digits"]


def test_a_deeply_nested_query_is_a_config_error_not_a_crash():
    text = VALID.replace("'\"Istanbul talks\" OR Peskov'", "'" + "(" * 200 + "a" + ")" * 200 + "'")
    assert problems(text) == [
        "watch.yaml:9: rules[0].query: column 51: nested more than 50 levels deep (parentheses, NOT and NEAR)"
    ]


def alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes whose aliases expand each other into 9**levels values."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels):
        below = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([below] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it():
    bomb = alias_bomb()
    assert len(bomb) < 500
    (problem,) = problems(bomb)
    assert problem.startswith("watch.yaml:4: a3[")
    assert problem.endswith(
        "aliases repeat more than 10,000 values in all: refused (write the values out, or nest fewer aliases)"
    )


def test_ordinary_aliases_still_work():
    text = VALID.replace(
        "    notify: [hook]",
        "    notify: &desks [hook]\n  - name: second\n    query: Lavrov\n    notify: *desks",
    )
    config = loads(text, "watch.yaml", env={})
    assert [rule.notify for rule in config.rules] == [("hook",), ("hook",)]


def test_an_alias_that_holds_itself_is_refused():
    assert problems("feeds: &loop [*loop]\n") == [
        "watch.yaml:1: feeds[0]: an alias refers to a value that contains it: refused"
    ]


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_nesting_is_refused_before_it_can_crash_the_parser(depth):
    text = "feeds: " + "[" * depth + "]" * depth + "\n"
    assert problems(text) == [
        "watch.yaml:1: lists and mappings nested more than 64 levels deep: refused"
    ]


PG_URL = "postgresql://watcher:hunter2-secret@db.example.org:5432/watcher"


def test_a_postgresql_url_is_a_valid_database():
    text = VALID.replace("settings:\n", f"settings:\n  database: {PG_URL}\n")
    assert loads(text, "watch.yaml", env={}).settings.database == PG_URL


def test_a_postgresql_url_without_the_extra_names_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "psycopg" in name else real(name, *a)
    )
    text = VALID.replace("settings:\n", f"settings:\n  database: {PG_URL}\n")
    found = problems(text) + problems(VALID, env={"WATCHER_DB": PG_URL})
    assert found == [
        "watch.yaml:2: settings.database: the PostgreSQL backend needs the extra: pip install 'watcher-feeds[postgres]'",
        "watch.yaml: WATCHER_DB: the PostgreSQL backend needs the extra: pip install 'watcher-feeds[postgres]'",
    ]


def test_a_bad_database_url_is_named_without_its_password():
    text = VALID.replace("settings:\n", "settings:\n  database: mysql://u:hunter2-secret@h/db\n")
    (problem,) = problems(text)
    assert problem == (
        "watch.yaml:2: settings.database: unknown database URL scheme 'mysql': give a file path,"
        " or a postgresql:// URL"
    )


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_config_is_an_error_not_zero_feeds(text):
    assert problems(text) == ["watch.yaml:1: the config is empty: it needs at least a feed"]


# URLs watcher cannot request, or that two URL parsers would read differently (issue 10)


def _with_urls(feed_url: str, hook_url: str = "https://hooks.example.org/x") -> str:
    import json

    return VALID.replace("https://example.org/world/rss.xml", json.dumps(feed_url)).replace(
        "https://hooks.example.org/x", json.dumps(hook_url)
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/", "invalid URL: port 99999 is out of range (1-65535)"),
        ("http://127.0.0.1:0/", "invalid URL: port 0 is out of range (1-65535)"),
        ("http://127.0.0.1:1\\@public.example/", "invalid URL: its host part contains a backslash"),
        ("http://example.org/\x1b[2Jrss", "invalid URL: it contains control characters"),
        ("http://exa mple.org/", "invalid URL: its host part contains a space"),
        ("http://a..b/rss", "invalid URL: invalid host name"),
        ("http://*.example.org/rss", "invalid URL: invalid host name"),
        (f"http://{'a' * 64}.org/rss", "invalid URL: invalid host name"),
        ("http://\u2603.org/rss", "invalid URL: invalid host name"),
        ("http://[::1/rss", "must be an http:// or https:// URL"),
    ],
)
def test_a_url_watcher_cannot_request_is_a_config_error(url, message):
    assert problems(_with_urls(url, url.replace("/rss", "/hook"))) == [
        f"watch.yaml:4: feeds[0].url: {message}",
        f"watch.yaml:14: notify.hook.url: {message}",
    ]


def test_a_notifier_url_is_not_quoted_in_its_error():
    (problem,) = problems(_with_urls("https://example.org/rss", "https://h.example:99999/s3cret"))
    assert "s3cret" not in problem and "h.example" not in problem


def test_credentials_in_a_feed_url_are_allowed():
    config = loads(_with_urls("https://me:pw@example.org/rss"), "watch.yaml", env={})
    assert config.feeds[0].url == "https://me:pw@example.org/rss"


AUTHORITY_PARTS = [
    "h",
    "x.org",
    "127.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    ":",
    ":80",
    ":0",
    ":99999",
    "@",
    "user:pw@",
    "\\",
    ".",
    "..",
    " ",
    "\t",
    "\x1b",
    "\u2603",
    "\uff0e",
    "\u00df",
    "%2e",
    "%E2%98%83",
    "[",
    "]",
    "*",
    "_",
    "-",
    "a" * 64,
    "xn--",
]
REST_PARTS = ["/", "?", "#", "\\", "@", "/a b", "/%2e%2e/", "?x=\\@h", "#@h:1"]


@pytest.mark.parametrize("credentials", [True, False])
def test_a_url_accepted_is_requested_and_read_alike_by_both_parsers(credentials):
    """Property: whatever URL passes the check, requests prepares it, and urllib.parse
    (which watcher's checks read) and urllib3 (which makes the connection) see the same
    host and port in it."""
    from urllib.parse import urlsplit

    import requests
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from urllib3.util import parse_url

    from watcher import urls

    @settings(max_examples=300)
    @given(
        st.sampled_from(["http://", "https://"]),
        st.lists(st.sampled_from(AUTHORITY_PARTS), min_size=1, max_size=5),
        st.lists(st.sampled_from(REST_PARTS), max_size=3),
    )
    def check(scheme: str, authority: list[str], rest: list[str]) -> None:
        url = scheme + "".join(authority) + "".join(rest)
        if urls.problem(url, credentials=credentials) is not None:
            return
        prepared = requests.Request("GET", url).prepare()
        assert prepared.url is not None
        ours, theirs = urlsplit(url), parse_url(prepared.url)
        assert credentials or theirs.auth is None
        assert urls.ascii_host(ours.hostname or "") == (theirs.host or "").strip("[]")
        assert (ours.port or None) == theirs.port

    check()


def test_a_database_path_in_the_file_is_relative_to_the_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mywork"
    folder.mkdir()
    (folder / "watch.yaml").write_text(
        VALID.replace("settings:\n", "settings:\n  database: w.db\n")
    )
    monkeypatch.chdir(tmp_path)
    assert load("mywork/watch.yaml", env={}).settings.database == str(folder / "w.db")
    assert load(folder / "watch.yaml", env={}).settings.database == str(folder / "w.db")
    (folder / "other.yaml").write_text(VALID)
    assert load(folder / "other.yaml", env={}).settings.database == "state/watcher.db"


def test_the_shipped_database_is_the_checkouts_state_folder():
    config = load(ROOT / "config" / "watch.yaml", env={})
    assert Path(config.settings.database).resolve() == ROOT / "state" / "watcher.db"


@pytest.mark.parametrize(
    ("value", "listen"), [("0.0.0.0:9999", "0.0.0.0:9999"), ("off", None), ("", None)]
)
def test_watcher_listen_overrides_whatever_the_file_says(value, listen):
    text = VALID.replace("settings:\n", "settings:\n  listen: 127.0.0.1:9187\n")
    assert loads(text, "watch.yaml", env={"WATCHER_LISTEN": value}).settings.listen == listen


def test_a_bad_watcher_listen_is_a_config_error():
    assert problems(VALID, env={"WATCHER_LISTEN": "nowhere"}) == [
        "watch.yaml: WATCHER_LISTEN: expected host:port (or 'off'), got 'nowhere'"
    ]


EMAIL = """\
feeds:
  - url: https://example.org/world/rss.xml
notify:
  desk:
    type: email
    to: desk@example.org
    from: watcher@example.org
    host: smtp.example.org
"""


def test_one_email_address_may_be_written_without_a_list():
    config = loads(EMAIL, "watch.yaml", env={})
    assert config.notify["desk"].to == ("desk@example.org",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("feeds:\n\t- url: https://example.org/rss\n", 2),
        ("feeds:\n  - url: https://example.org/rss\n\tname: world\n", 3),
        ("feeds:\n  - url: https://example.org/rss\n    \tname: world\n", 3),
    ],
)
def test_a_tab_in_the_indentation_is_called_a_tab_with_its_line(text, line):
    assert problems(text) == [
        f"watch.yaml:{line}: YAML syntax error: a tab: YAML does not allow tabs for "
        "indentation (indent with spaces)"
    ]


def test_a_tab_between_a_key_and_its_value_is_allowed():
    config = loads("feeds:\n  - url:\thttps://example.org/rss\n", "watch.yaml", env={})
    assert config.feeds[0].url == "https://example.org/rss"


def test_the_same_url_under_two_feed_names_is_a_warning():
    text = VALID.replace(
        "    tags: [russia]\n",
        "    tags: [russia]\n  - url: https://EXAMPLE.org/world/rss.xml\n    name: world-again\n",
    )
    assert loads(text, "watch.yaml", env={}).warnings() == [
        "watch.yaml:7: feeds[1].url: feed 'world-again' has the same URL as feed 'world': "
        "it is fetched twice and its items alerted twice; keep one"
    ]


def test_lower_case_operator_words_are_warned_about_with_rule_and_column():
    text = VALID.replace(
        "'\"Istanbul talks\" OR Peskov'", "'Peskov and Istanbul or talks \"rock and roll\"'"
    )
    assert loads(text, "watch.yaml", env={}).warnings() == [
        "watch.yaml:9: rules[0].query: column 8: rule 'talks' searches 'and' as a word: "
        "did you mean AND? (operators are upper case)",
        "watch.yaml:9: rules[0].query: column 21: rule 'talks' searches 'or' as a word: "
        "did you mean OR? (operators are upper case)",
    ]
    assert loads(VALID, "watch.yaml", env={}).warnings() == []


@pytest.mark.parametrize("kind", ["slack", "discord"])
def test_chat_notifiers_refuse_a_webhook_secret_and_headers(kind):
    text = VALID.replace(
        "    type: webhook\n",
        f"    type: {kind}\n    secret: s3cret\n    headers: {{X-Token: t}}\n",
    )
    assert problems(text) == [
        f"watch.yaml:14: notify.hook.secret: unknown key 'secret' for a {kind} notifier "
        "(only webhook notifiers take it)",
        f"watch.yaml:15: notify.hook.headers: unknown key 'headers' for a {kind} notifier "
        "(only webhook notifiers take it)",
    ]


def test_an_unknown_notifier_key_is_suggested_from_that_type_only():
    text = VALID.replace(
        "    url: https://hooks.example.org/x", "    urll: https://hooks.example.org/x"
    )
    assert (
        "watch.yaml:14: notify.hook.urll: unknown key 'urll' for a webhook notifier (did you mean 'url'?)"
        in problems(text)
    )
