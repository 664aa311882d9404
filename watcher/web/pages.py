"""The HTML pages: server-rendered from Jinja2 templates, autoescaped, read-only.

Everything a feed says reaches a page through autoescaping or through ``marked`` (which
escapes it too); links are kept only for http(s). Every listing is a page of bounded length
read through an index, so a page costs the same with ten feeds or ten thousand.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import islice
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from watcher import __version__
from watcher.errors import QueryError
from watcher.links import safe_link, shown_url
from watcher.query import parse
from watcher.search import find
from watcher.state import FEED_STATUSES
from watcher.text import highlight, plain
from watcher.web import params
from watcher.web.params import BadParameter
from watcher.web.site import Site

FEEDS_PAGE = 100
"""Feeds a page of /feeds lists."""
LISTED = 100
"""Matches, deliveries and tester results a page lists at most."""
SEARCHED = 50
"""Results /search lists."""
EXAMINED = 2000
"""Items the tester and /search read at most for one query (``watcher search`` reads up to
100,000): a query the index cannot narrow down (a ``/regex/``) answers within the page's
time, and says that it stopped."""
FEED_ITEMS = 50
"""Newest items listed on a feed's page."""
ALERTS = 10
"""Last alerts on the overview."""
FAILING = 10
"""Failing feeds named on the overview."""
REFRESH = 60
"""Seconds after which the overview reloads itself (a meta refresh: no script)."""
DELIVERY_STATUSES = ("pending", "sent", "dead", "failed")
SUMMARY = 280
"""Characters of an item's summary shown under its title."""

STATIC = {"style.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}
_STATIC_FILES = {name: (resources.files(__package__) / "static" / name) for name in STATIC}


def when(moment: datetime | None) -> Markup:
    """A time as the CLI's tables show it, in UTC and saying so, machine-readable too."""
    if moment is None:
        return Markup("-")
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC")
    )


def duration(delta: timedelta) -> str:
    """``30s``, ``5m``, ``1h 30m``, ``2d``: as the config writes durations."""
    seconds, parts = round(delta.total_seconds()), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts)


def marked(text: str, words: Collection[str] = (), limit: int | None = None) -> Markup:
    """A feed's HTML text as escaped plain text, the words that made a match in ``<mark>``."""
    return Markup(highlight(plain(text, limit), words, lambda word: f"<mark>{word}</mark>", escape))


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("watcher.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        when=when, link=safe_link, shown=shown_url, plain=plain, duration=duration
    )
    environment.globals.update(
        version=__version__,
        marked=marked,
        feed_statuses=FEED_STATUSES,
        delivery_statuses=DELIVERY_STATUSES,
        summary=SUMMARY,
    )
    return environment


TEMPLATES = _environment()


def render(template: str, code: int = 200, **context: Any) -> Response:
    context.setdefault("refresh", None)
    html = TEMPLATES.get_template(template).render(**context)
    return Response(html, status=code, content_type="text/html; charset=utf-8")


def error(status: int, message: str) -> Response:
    return render("error.html", status, nav=None, status=status, message=message)


def overview(site: Site, request: Request) -> Response:
    store, now = site.store, site.clock()
    return render(
        "overview.html",
        nav="overview",
        refresh=REFRESH,
        health=store.feed_health(),
        failing=store.feed_rows(status="failing", limit=FAILING),
        outbox=store.delivery_counts(),
        alerts=store.stories(now - timedelta(days=7), limit=ALERTS),
    )


def feeds(site: Site, request: Request) -> Response:
    store = site.store
    after = params.text(request, "after") or None
    problem, rows = None, []
    try:
        status = params.choice(request, "status", FEED_STATUSES)
        rows = store.feed_rows(status=status, after=after, limit=FEEDS_PAGE)
    except BadParameter as exc:
        status, problem = None, str(exc)
    return render(
        "feeds.html",
        nav="feeds",
        health=store.feed_health(),
        status=status,
        rows=rows,
        problem=problem,
        after=after,
        next_after=rows[-1].state.name if len(rows) == FEEDS_PAGE else None,
    )


def feed(site: Site, request: Request, name: str) -> Response:
    row = site.store.feed_row(name)
    if row is None:
        raise NotFound(f"no feed named {name!r} in the database")
    config = site.config()
    configured = next((f for f in config.feeds if f.name == name), None)
    return render(
        "feed.html",
        nav="feeds",
        row=row,
        configured=configured,
        interval=config.feed_interval(configured) if configured else None,
        items=list(islice(site.store.items_since(params.EPOCH, name), FEED_ITEMS)),
        now=site.clock(),
    )


def matches(site: Site, request: Request) -> Response:
    rule = params.text(request, "rule") or None
    rules = sorted({r.name for r in site.config().rules} | ({rule} if rule else set()))
    problem, found, since = None, [], params.text(request, "since") or "1d"
    try:
        since, start = params.since(request, "1d", site.clock())
        found = site.store.stories(start, rule, LISTED)
    except BadParameter as exc:
        problem = str(exc)
    return render(
        "matches.html",
        nav="matches",
        rule=rule,
        rules=rules,
        since=since,
        stories=found,
        problem=problem,
        limit=LISTED,
    )


def deliveries(site: Site, request: Request) -> Response:
    problem, rows, status = None, [], None
    try:
        status = params.choice(request, "status", DELIVERY_STATUSES)
        rows = site.store.deliveries(
            failed=status == "failed",
            status=None if status == "failed" else status,
            limit=LISTED,
        )
    except BadParameter as exc:
        problem = str(exc)
    return render(
        "deliveries.html",
        nav="deliveries",
        status=status,
        counts=site.store.delivery_counts(),
        rows=rows,
        problem=problem,
        limit=LISTED,
    )


def test(site: Site, request: Request) -> Response:
    """The rule tester: what a query matches among the items seen lately, as
    ``watcher test-rule`` says, the matched words marked."""
    query = request.args.get("q", "")
    since = params.text(request, "since") or "7d"
    context: dict[str, Any] = {"query": query, "since": since, "result": None}
    context.update(problem=None, query_error=None)
    if query.strip():
        try:
            since, start = params.since(request, "7d", site.clock())
            node = parse(query)
            transliterate = site.config().settings.transliterate
            context["result"] = find(
                site.store, node, LISTED, EXAMINED, since=start, transliterate=transliterate
            )
        except QueryError as exc:
            context["query_error"] = exc
        except BadParameter as exc:
            context["problem"] = str(exc)
    return render("test.html", nav="test", limit=LISTED, examined=EXAMINED, **context)


def search(site: Site, request: Request) -> Response:
    query = request.args.get("q", "")
    context: dict[str, Any] = {"query": query, "result": None, "query_error": None}
    if query.strip():
        try:
            transliterate = site.config().settings.transliterate
            context["result"] = find(
                site.store, parse(query), SEARCHED, EXAMINED, transliterate=transliterate
            )
        except QueryError as exc:
            context["query_error"] = exc
    return render("search.html", nav="search", limit=SEARCHED, examined=EXAMINED, **context)


def static(site: Site, request: Request, name: str) -> Response:
    if name not in STATIC:
        raise NotFound(f"no file {name!r}")
    response = Response(_STATIC_FILES[name].read_bytes(), content_type=STATIC[name])
    response.headers["Cache-Control"] = "max-age=3600"
    return response
