"""The YAML config: read once, interpolated, validated into immutable objects.

Every problem is reported at once as ``file:line: path: message``. Line numbers come from
the YAML node tree, so an error points at the key the user wrote, not at a Python object.
"""

from __future__ import annotations

import difflib
import functools
import gc
import importlib.util
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from watcher import DISTRIBUTION, __version__
from watcher.errors import ConfigError, QueryError
from watcher.notify import registry
from watcher.notify.options import NotifierOptions
from watcher.query import (
    OPERATORS,
    Node,
    _tokenize,
    combine,
    has_positive,
    parse,
    structured,
    term,
)
from watcher.rules import Rule
from watcher.values import SECTION, Duration
from watcher.values import Rate as Rate  # re-exported: the config's values, read from here
from watcher.values import http_url as _http_url
from watcher.values import parse_duration as parse_duration
from watcher.values import parse_rate as parse_rate
from watcher.yamlsource import Path_, Source

DEFAULT_CONFIG = "config/watch.yaml"
DEFAULT_USER_AGENT = f"watcher/{__version__} (+https://github.com/watcher-rss/watcher)"

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.I)


def parse_size(value: object) -> int:
    """``10MB``, ``512KB``, ``1GiB`` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _SIZE.match(str(value))
    if not found:
        raise ValueError(f"invalid size {value!r} (use e.g. 512KB, 10MB)")
    return int(float(found[1]) * _SIZE_UNITS[(found[2] or "").lower()])


def derive_feed_name(url: str) -> str:
    """A readable default name from a feed URL's host and path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "feed"
    except ValueError:  # the URL's own check reports it
        return "feed"
    host = host.removeprefix("www.")
    path = re.sub(r"\.(xml|rss|atom|json|php)$", "", parts.path.strip("/"))
    path = re.sub(r"(^|/)(rss|feed|atom|index)$", "", path)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{host}/{path}").strip("-")
    return slug.lower()


Size = Annotated[int, BeforeValidator(parse_size)]


def database_problem(database: str) -> str | None:
    """What is wrong with a ``database`` setting, never quoting it (a URL holds a password)."""
    if not database.strip():
        return "empty: give a file path, or a postgresql:// URL"
    if "://" not in database:
        return None
    scheme = database.split("://", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        return f"unknown database URL scheme {scheme!r}: give a file path, or a postgresql:// URL"
    missing = [
        name for name in ("psycopg", "psycopg_pool") if importlib.util.find_spec(name) is None
    ]
    if missing:
        return f"the PostgreSQL backend needs the extra: pip install '{DISTRIBUTION}[postgres]'"
    return None


class _Model(BaseModel):
    model_config = SECTION


class RetrySettings(_Model):
    first: Duration = timedelta(seconds=30)  # first retry of a failed delivery
    max: Duration = timedelta(hours=1)  # cap of the exponential backoff
    give_up: Duration = timedelta(hours=24)  # a delivery failing this long is dead


class WebAuth(_Model):
    """The HTTP basic credentials the web pages ask for."""

    username: str = Field(min_length=1)
    password: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping: {username: ..., password: ...}")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("a user name cannot hold ':' (HTTP basic auth splits at it)")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the password is empty (is its environment variable set?)")
        return value


class Settings(_Model):
    database: str = "state/watcher.db"  # given: relative to this file; absent: to the working
    # directory; WATCHER_DB overrides
    interval: Duration = timedelta(minutes=5)  # default poll interval
    timeout: Duration = timedelta(seconds=30)  # per HTTP request
    max_feed_size: Size = 10 * 1000**2  # larger responses are cut off and reported
    concurrency: int = Field(16, ge=1, le=512)  # feeds fetched at once
    user_agent: str = DEFAULT_USER_AGENT
    max_item_age: Duration = timedelta(days=7)  # older new items are stored, not alerted
    retention: Duration = timedelta(days=90)  # items gone from their feed this long are pruned
    listen: str | None = "127.0.0.1:9187"  # web pages, /healthz and /metrics; null disables
    web_auth: WebAuth | None = None  # required for the pages when listen is not loopback
    stories: Duration | None = timedelta(hours=24)  # reports of one story within this window
    # alert a rule once; null: every report alerts
    log_format: Literal["text", "json"] = "text"
    retry: RetrySettings = RetrySettings()
    transliterate: bool = False  # words in other scripts also match by their Latin spelling

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        problem = database_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port, got {value!r}")
        return value


class FeedConfig(_Model):
    url: str
    name: str = ""  # derived from the URL when empty
    interval: Duration | None = None  # None: settings.interval
    tags: tuple[str, ...] = ()
    backfill: bool = False  # alert on the items present at the first poll too
    headers: dict[str, str] = {}
    full_text: bool = False  # fetch each new item's page and match its main text too

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class RuleConfig(_Model):
    name: str = Field(min_length=1)
    query: str | None = None
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    feeds: tuple[str, ...] | None = None  # feed names and "tag:x"; None for every feed
    notify: tuple[str, ...] = ()
    transliterate: bool | None = None  # None: settings.transliterate
    stories: Duration | None = None  # absent: settings.stories; null: every report alerts

    def story_window(self, default: timedelta | None) -> timedelta | None:
        """The rule's story window: its own ``stories`` when the file gives one (null
        included), else the settings'."""
        return self.stories if "stories" in self.model_fields_set else default


class Config(_Model):
    settings: Settings = Settings()
    feeds: tuple[FeedConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    notify: dict[str, NotifierOptions] = {}
    source: str = Field("", exclude=True)
    """The file the config was read from."""
    _queries: dict[str, Node] = PrivateAttr(default_factory=dict)
    """Each rule's query tree, kept from validation so that no query is parsed twice."""
    _located_warnings: tuple[str, ...] = PrivateAttr(default=())
    """Warnings found while reading the file, as ``file:line: path: message``."""

    def feed_interval(self, feed: FeedConfig) -> timedelta:
        return feed.interval or self.settings.interval

    def compiled_rules(self) -> tuple[Rule, ...]:
        """The rules as matchable objects; the config was validated, so every query parses."""
        disabled = set(self.disabled_notifiers())
        window = self.settings.stories
        return tuple(
            _compile_rule(
                rule,
                disabled,
                self._queries.get(rule.name),
                window,
                self.settings.transliterate,
            )
            for rule in self.rules
        )

    def disabled_notifiers(self) -> list[str]:
        return [name for name, options in self.notify.items() if not options.enabled]

    def warnings(self) -> list[str]:
        """Valid settings that will not do what the user may expect."""
        found = list(self._located_warnings)
        disabled = self.disabled_notifiers()
        if disabled:
            found.append(
                f"notifiers disabled (empty url or host): {', '.join(disabled)}; "
                "their rules only log matches"
            )
        return found


def _compile_rule(
    rule: RuleConfig,
    disabled: Collection[str] = (),
    node: Node | None = None,
    stories: timedelta | None = None,
    transliterate: bool = False,
) -> Rule:
    if node is None:
        node = _rule_query(rule)
    notify = tuple(name for name in rule.notify if name not in disabled)
    feeds = frozenset(rule.feeds) if rule.feeds else None
    if rule.transliterate is not None:
        transliterate = rule.transliterate
    return Rule(
        rule.name,
        node,
        feeds,
        notify,
        transliterate=transliterate,
        stories=rule.story_window(stories),
    )


def _rule_query(rule: RuleConfig) -> Node:
    node = combine(
        parse(rule.query) if rule.query is not None else None,
        structured(rule.any, rule.all, rule.none),
    )
    if node is None:
        raise QueryError("a rule needs a query or any/all lists", 1)
    if not has_positive(node):
        raise QueryError("the rule has only exclusions; it needs a term that must be present", 1)
    return node


def config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file: the one named, else ``$WATCHER_CONFIG``, else config/watch.yaml."""
    env = os.environ if env is None else env
    return Path(explicit or env.get("WATCHER_CONFIG") or DEFAULT_CONFIG)


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{filename}: cannot read the config file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{filename}: the config file is not UTF-8 text"]) from exc
    return loads(text, filename, env)


def loads(text: str, filename: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    with _collector_paused():
        return _loads(text, filename, os.environ if env is None else env)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A config of thousands of rules is hundreds of thousands of small objects and no
    reference cycles: the cyclic collector would only walk them again and again (a third of
    the loading time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(text: str, filename: str, env: Mapping[str, str]) -> Config:
    source = Source(filename, env)
    data = source.read(text)
    if data is None and not source.problems:
        raise ConfigError([f"{filename}:1: the config is empty: it needs at least a feed"])
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([*source.problems, source.at((), "the config must be a mapping")])
    if source.problems and not data:
        raise ConfigError(source.problems)
    config = _validate(data, source)
    if source.problems:
        raise ConfigError(source.sorted_problems())
    assert config is not None
    settings = _placed(config.settings, filename, env, "database" in (data.get("settings") or {}))
    return config.model_copy(update={"source": filename, "settings": settings})


def _placed(settings: Settings, filename: str, env: Mapping[str, str], given: bool) -> Settings:
    """The settings where this process runs them: ``WATCHER_DB`` and ``WATCHER_LISTEN``
    override the file whatever it says (a container's own address, a shared database), and
    a database path the file gives is relative to the file's folder, so every command finds
    the same database wherever it is started."""
    updates: dict[str, Any] = {}
    database = env.get("WATCHER_DB")
    if database:
        problem = database_problem(database)
        if problem:
            raise ConfigError([f"{filename}: WATCHER_DB: {problem}"])
        updates["database"] = database
    elif given and "://" not in settings.database:
        updates["database"] = str(Path(filename).parent.absolute() / settings.database)
    listen = env.get("WATCHER_LISTEN")
    if listen is not None:
        value = None if listen.strip().lower() in ("", "null", "off", "none") else listen.strip()
        try:
            Settings(listen=value)
        except ValidationError:
            raise ConfigError(
                [f"{filename}: WATCHER_LISTEN: expected host:port (or 'off'), got {listen!r}"]
            ) from None
        updates["listen"] = value
    return settings.model_copy(update=updates) if updates else settings


def _validate(data: dict[str, Any], source: Source) -> Config | None:
    """Validate section by section, so that one bad entry does not hide the others' errors."""
    for key in data:
        if key not in ("settings", "feeds", "rules", "notify"):
            source.problems.append(source.at((key,), f"unknown key {key!r}{_suggest(key, _TOP)}"))
    settings = _validated(source, Settings, data.get("settings") or {}, ("settings",))
    feeds = [
        _validated(source, FeedConfig, feed, ("feeds", i))
        for i, feed in enumerate(_listed(data, "feeds", source))
    ]
    rules = [
        _validated(source, RuleConfig, rule, ("rules", i))
        for i, rule in enumerate(_listed(data, "rules", source))
    ]
    raw_notify = data.get("notify") or {}
    if not isinstance(raw_notify, dict):
        source.problems.append(source.at(("notify",), "expected a mapping of notifier names"))
        raw_notify = {}
    notify = {
        name: _validated(source, registry.options_adapter(), options, ("notify", name))
        for name, options in raw_notify.items()
    }
    queries: dict[str, Node] = {}
    for path, message in _cross_check(feeds, rules, set(raw_notify), queries):
        source.problems.append(source.at(path, message))
    for name, options in notify.items():
        template = getattr(options, "template", None)
        if template:
            found, problem = _check_template(template, Path(source.filename).parent)
            if problem:
                source.problems.append(source.at(("notify", name, "template"), problem))
            else:
                notify[name] = options.model_copy(update={"template": found})
    if source.problems or settings is None:
        return None
    config = Config(
        settings=settings,
        feeds=tuple(feed for feed in feeds if feed is not None),
        rules=tuple(rule for rule in rules if rule is not None),
        notify={name: options for name, options in notify.items() if options is not None},
    )
    config._queries = queries
    config._located_warnings = tuple(
        source.at(path, message) for path, message in _doubtful(config.feeds, config.rules)
    )
    return config


_TOP = ["settings", "feeds", "rules", "notify"]


def _listed(data: dict[str, Any], key: str, source: Source) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        source.problems.append(source.at((key,), "expected a list"))
        return []
    if key == "feeds":
        _default_feed_names(value)
    return value


def _default_feed_names(feeds: list[Any]) -> None:
    for feed in feeds:
        if isinstance(feed, dict) and not feed.get("name") and isinstance(feed.get("url"), str):
            feed["name"] = derive_feed_name(feed["url"])


def _cross_check(
    feeds: list[FeedConfig | None],
    rules: list[RuleConfig | None],
    notifiers: set[str],
    queries: dict[str, Node],
) -> list[tuple[Path_, str]]:
    """Checks that span several keys: unique names, references, queries. The query tree of
    every valid rule is put in ``queries``."""
    problems: list[tuple[Path_, str]] = []
    feed_names: dict[str, int] = {}
    for index, feed in enumerate(feeds):
        if feed is None:
            continue
        if feed.name in feed_names:
            problems.append(
                (
                    ("feeds", index, "name"),
                    f"duplicate feed name {feed.name!r} (names must be unique; set name: on one)",
                )
            )
        feed_names.setdefault(feed.name, index)
    tags = {tag for feed in feeds if feed is not None for tag in feed.tags}
    rule_names: set[str] = set()
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        where: Path_ = ("rules", index)
        if rule.name in rule_names:
            problems.append(((*where, "name"), f"duplicate rule name {rule.name!r}"))
        rule_names.add(rule.name)
        node, rule_problems = _check_rule_query(rule, where)
        problems.extend(rule_problems)
        if node is not None:
            queries[rule.name] = node
        for position, name in enumerate(rule.notify):
            if name not in notifiers:
                known = ", ".join(sorted(notifiers)) or "none defined"
                problems.append(
                    ((*where, "notify", position), f"unknown notifier {name!r} (known: {known})")
                )
        for position, scope in enumerate(rule.feeds or ()):
            if scope.startswith("tag:"):
                if scope[4:] not in tags:
                    problems.append(((*where, "feeds", position), f"no feed has tag {scope[4:]!r}"))
            elif scope not in feed_names:
                hint = _suggest(scope, feed_names)
                problems.append(((*where, "feeds", position), f"unknown feed {scope!r}{hint}"))
    return problems


def _doubtful(
    feeds: Sequence[FeedConfig], rules: Sequence[RuleConfig]
) -> Iterator[tuple[Path_, str]]:
    """Valid settings that will not do what the user may expect: one URL under two names
    (fetched twice, its items alerted twice), a lower-case ``and`` meant as ``AND``."""
    first: dict[str, int] = {}
    for index, feed in enumerate(feeds):
        parts = urlsplit(feed.url)
        same = parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
        if same in first:
            earlier = feeds[first[same]].name
            yield (
                ("feeds", index, "url"),
                f"feed {feed.name!r} has the same URL as feed {earlier!r}: it is fetched twice "
                "and its items alerted twice; keep one",
            )
        first.setdefault(same, index)
    for index, rule in enumerate(rules):
        for column, word, meant in _operator_words(rule.query or ""):
            yield (
                ("rules", index, "query"),
                f"column {column}: rule {rule.name!r} searches {word!r} as a word: did you mean "
                f"{meant}? (operators are upper case)",
            )


_NEAR_WORD = re.compile(r"near/\d+", re.IGNORECASE)


def _operator_words(query: str) -> list[tuple[int, str, str]]:
    """(column, word, operator) of each bare word that reads as an operator but is not one
    because of its case: ``and``, ``Or``, ``not``, ``near/5``."""
    try:
        tokens = _tokenize(query)
    except QueryError:
        return []
    found = []
    for token in tokens:
        if token.kind != "term" or token.quoted or token.field is not None:
            continue
        meant = token.text.upper()
        if meant in OPERATORS or _NEAR_WORD.fullmatch(token.text):
            found.append((token.column, token.text, meant))
    return found


def _check_rule_query(
    rule: RuleConfig, where: Path_
) -> tuple[Node | None, list[tuple[Path_, str]]]:
    """The rule's query tree, or the first problem of its terms at the key that holds it."""
    try:
        parsed = parse(rule.query) if rule.query is not None else None
    except QueryError as exc:
        return None, [((*where, "query"), str(exc))]
    for key in ("any", "all", "none"):
        for index, text in enumerate(getattr(rule, key)):
            try:
                term(text)
            except QueryError as exc:
                return None, [((*where, key, index), exc.message)]
    node = combine(parsed, structured(rule.any, rule.all, rule.none))
    if node is None:
        return None, [(where, "a rule needs a query or any/all lists")]
    if not has_positive(node):
        message = "the rule has only exclusions; it needs a term that must be present"
        return None, [(where, message)]
    return node, []


def _check_template(path: str, base: Path) -> tuple[str, str | None]:
    """The template's full path, or what is wrong with it (naming its line)."""
    import jinja2  # only for a config with templates: its import is a tenth of start-up

    full = Path(path) if Path(path).is_absolute() else base / path
    try:
        text = full.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return str(full), f"cannot read the template {full}: {getattr(exc, 'strerror', exc)}"
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return str(full), f"template {full}:{exc.lineno}: {exc.message}"
    return str(full), None


def _suggest(word: str, known: Mapping[str, object] | list[str]) -> str:
    close = difflib.get_close_matches(word, [key for key in known if key != word], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _validated(source: Source, model: Any, value: Any, path: Path_) -> Any:
    """The validated object, or None after recording every error at its line."""
    adapter = model if isinstance(model, TypeAdapter) else _adapter(model)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        for error in exc.errors():
            source.problems.append(_locate(source, {**error, "loc": (*path, *error["loc"])}))
        return None


def _locate(source: Source, error: Mapping[str, Any]) -> str:
    """A pydantic error as ``file:line: path: message``."""
    loc = tuple(error["loc"])
    path = _user_path(loc)
    kind = error["type"]
    if kind == "extra_forbidden" and len(path) == 3 and path[0] == "notify":
        return source.at(path, _unknown_notifier_key(str(path[-1]), loc[2]))
    if kind == "extra_forbidden":
        key = path[-1]
        parent_fields = _fields_at(path[:-1])
        hint = _suggest(str(key), parent_fields) if parent_fields else ""
        return source.at(path, f"unknown key {key!r}{hint}")
    if kind == "missing":
        return source.at(path[:-1], f"missing required key {path[-1]!r}")
    if kind == "union_tag_invalid":
        return source.at(
            (*path, "type"),
            f"unknown notifier type {error['input'].get('type')!r} "
            f"(known: {', '.join(registry.types())})",
        )
    if kind == "union_tag_not_found":
        known = ", ".join(registry.types())
        return source.at(path, f"missing required key 'type' (one of {known})")
    message = str(error["msg"]).removeprefix("Value error, ")
    return source.at(path, message[:1].lower() + message[1:])


def _unknown_notifier_key(key: str, kind: str) -> str:
    """Name the notifier's type, and the types that do take the key (a Slack notifier
    given a webhook's ``secret``)."""
    models = {channel.type: channel.options for channel in registry.channels()}
    known = _aliases(models[kind])
    takers = [other for other, model in models.items() if key in _aliases(model)]
    if takers:
        hint = f" (only {', '.join(takers)} notifiers take it)"
    else:
        hint = _suggest(key, known) or f" (known: {', '.join(sorted(known))})"
    return f"unknown key {key!r} for a {kind} notifier{hint}"


def _user_path(loc: tuple[Any, ...]) -> Path_:
    """Drop the discriminator pydantic inserts after a notifier's name."""
    if len(loc) >= 3 and loc[0] == "notify" and loc[2] in registry.types():
        loc = (*loc[:2], *loc[3:])
    return loc


_SECTION_FIELDS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Config,
    ("settings",): Settings,
    ("settings", "retry"): RetrySettings,
    ("feeds",): FeedConfig,
    ("rules",): RuleConfig,
}


def _fields_at(path: Path_) -> list[str]:
    shape = tuple(part for part in path if isinstance(part, str))
    model = _SECTION_FIELDS.get(shape)
    return _aliases(model) if model else []


def _aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items() if name != "source"]
