"""The WSGI application on ``settings.listen``: routing, access, errors and the headers of
every response. Werkzeug does the routing, the requests and the responses; the views are
plain functions of the site and the request (pages.py, api.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from watcher import health
from watcher.errors import StateError
from watcher.web import api, pages
from watcher.web.access import Access, authorized, local_name, page_access
from watcher.web.headers import SECURITY_HEADERS
from watcher.web.site import Site

log = logging.getLogger(__name__)


View = Callable[..., Response]

VIEWS: dict[str, View] = {
    "overview": pages.overview,
    "feeds": pages.feeds,
    "feed": pages.feed,
    "matches": pages.matches,
    "deliveries": pages.deliveries,
    "test": pages.test,
    "search": pages.search,
    "static": pages.static,
    "api_feeds": api.feeds,
    "api_matches": api.matches,
    "api_deliveries": api.deliveries,
}


def _page(path: str, endpoint: str, **options: Any) -> Rule:
    """A route answering GET (and so HEAD) only: the pages are read-only."""
    return Rule(path, endpoint=endpoint, methods=["GET"], **options)


URLS = Map(
    [
        _page("/healthz", "healthz"),
        _page("/metrics", "metrics"),
        _page("/", "overview"),
        _page("/feeds", "feeds"),
        _page("/feeds/<path:name>", "feed"),
        _page("/matches", "matches"),
        _page("/deliveries", "deliveries"),
        _page("/test", "test"),
        _page("/search", "search"),
        _page("/static/<name>", "static"),
        _page("/favicon.ico", "static", defaults={"name": "icon.svg"}),
        _page("/api/feeds", "api_feeds"),
        _page("/api/matches", "api_matches"),
        _page("/api/deliveries", "api_deliveries"),
    ],
    strict_slashes=False,
)

UNGUARDED = frozenset({"/healthz", "/metrics"})


class WebApp:
    """The pages, the JSON API, /healthz and /metrics. ``loopback``: whether the address
    served only takes local connections (without ``web_auth``, the pages are served only
    then)."""

    def __init__(self, site: Site, *, loopback: bool) -> None:
        self.site = site
        self.loopback = loopback

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.respond(request)
        response.headers.update(SECURITY_HEADERS)
        if request.path not in UNGUARDED and not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response(environ, start_response)

    @property
    def access(self) -> Access:
        return page_access(self.loopback, self.site.config().settings.web_auth)

    def respond(self, request: Request) -> Response:
        api_request = request.path.startswith("/api/")
        try:
            if request.path not in UNGUARDED:
                refused = self._refused(request)
                if refused is not None:
                    return refused
            endpoint, values = URLS.bind_to_environ(request.environ).match()
            if endpoint == "healthz":
                return health.healthz(self.site.check)
            if endpoint == "metrics":
                return health.metrics(self.site.metrics)
            return VIEWS[endpoint](self.site, request, **values)
        except HTTPException as exc:
            if exc.code is not None and exc.code < 400:  # a redirect (a trailing slash)
                return exc.get_response(request.environ)
            return _error(exc.code or 500, exc.description or exc.name, api_request)
        except StateError as exc:
            log.warning("web: %s: %s", request.path, exc)
            return _error(503, f"the database cannot be read: {exc}", api_request)
        except Exception:
            log.exception("web: %s failed", request.path)
            return _error(
                500, "something went wrong on our side; the log has the details", api_request
            )

    def _refused(self, request: Request) -> Response | None:
        access = self.access
        if access is Access.OPEN:
            if local_name(request.host):
                return None
            return Response(
                "Without settings.web_auth the pages answer only requests for localhost or a"
                " loopback address.\n",
                status=403,
                content_type="text/plain; charset=utf-8",
            )
        if access is Access.OFF:
            return Response(
                "The web pages are off: watcher listens on an address other machines can"
                " reach, and settings.web_auth is not set. /healthz and /metrics answer.\n",
                status=403,
                content_type="text/plain; charset=utf-8",
            )
        auth = self.site.config().settings.web_auth
        assert auth is not None
        if authorized(request.authorization, auth):
            return None
        return Response(
            "This page needs the user name and password of settings.web_auth.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Basic realm="watcher", charset="UTF-8"'},
        )


def _error(status: int, message: str, api_request: bool) -> Response:
    if api_request:
        return api.error(status, message)
    return pages.error(status, message)
