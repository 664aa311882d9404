"""``/healthz`` and ``/metrics``: the web server on ``settings.listen`` answers them whatever
the pages' access, since a probe or a Prometheus scrape carries no password."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

Check = Callable[[], str | None]
"""Returns what is wrong, or None when all is well."""


def healthz(check: Check) -> Response:
    """200 "ok", or 503 and the reason."""
    problem = check()
    return Response(
        f"{problem or 'ok'}\n",
        status=503 if problem else 200,
        content_type="text/plain; charset=utf-8",
    )


def metrics(text: Callable[[], bytes]) -> Response:
    """The Prometheus text exposition."""
    return Response(text(), content_type="text/plain; version=0.0.4; charset=utf-8")
