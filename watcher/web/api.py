"""The JSON API: ``/api/feeds``, ``/api/matches`` and ``/api/deliveries`` give the objects
the CLI's ``--json`` prints (watcher.records builds both), a page at a time.

- ``/api/feeds?status=&after=&limit=``: the feeds scheduled now, by name; a full page
  links the next one (``Link: <...>; rel="next"``).
- ``/api/matches?rule=&since=1d&limit=``: matches, newest first.
- ``/api/deliveries?status=&failed=&limit=``: the outbox, newest first.

A bad parameter is a 400 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from watcher.records import delivery_record, feed_record, story_record
from watcher.state import FEED_STATUSES
from watcher.web import params
from watcher.web.params import BadParameter
from watcher.web.site import Site

DELIVERY_STATUSES = ("pending", "sent", "dead")


def respond(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, indent=1)
    return Response(body, status=status, content_type="application/json; charset=utf-8")


def error(status: int, message: str) -> Response:
    return respond({"error": message}, status)


def feeds(site: Site, request: Request) -> Response:
    try:
        status = params.choice(request, "status", FEED_STATUSES)
        limit = params.limit(request)
    except BadParameter as exc:
        return error(400, str(exc))
    after = params.text(request, "after") or None
    rows = site.store.feed_rows(status=status, after=after, limit=limit)
    response = respond([feed_record(r.state.name, r.url, r.state, r.items) for r in rows])
    if len(rows) == limit:
        query = {"after": rows[-1].state.name, "limit": limit}
        if status is not None:
            query["status"] = status
        response.headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    return response


def matches(site: Site, request: Request) -> Response:
    try:
        _, start = params.since(request, "1d", site.clock())
        limit = params.limit(request)
    except BadParameter as exc:
        return error(400, str(exc))
    rule = params.text(request, "rule") or None
    return respond([story_record(s) for s in site.store.stories(start, rule, limit)])


def deliveries(site: Site, request: Request) -> Response:
    try:
        status = params.choice(request, "status", DELIVERY_STATUSES)
        limit = params.limit(request)
    except BadParameter as exc:
        return error(400, str(exc))
    rows = site.store.deliveries(failed=params.flag(request, "failed"), status=status, limit=limit)
    return respond([delivery_record(d) for d in rows])
