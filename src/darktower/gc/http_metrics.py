"""Request metrics of the GC's HTTP API, by route template, method and status code.

`HttpMetrics` is plain ASGI middleware, installed outermost (`install_http_metrics`, after the
limits), so the 413 and 429 refusals are counted too:

* `gc_http_requests_total{method, route, code}` — requests answered;
* `gc_http_request_duration_seconds{method, route}` — time to the end of the answer.

`route` is the template the request matches (`/v1/meetings/{meeting_id}/join`, a mount's
prefix such as `/dashboard`), or `unmatched`; `method` is one of `METHODS` or `other`. Neither
is ever the raw path or method a client sent, so no client can create series. The documented
answers of every route (its status code and its OpenAPI `responses`) start at 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "METHODS",
    "UNMATCHED",
    "HttpMetrics",
    "install_http_metrics",
    "route_template",
]

HTTP_REQUESTS = Counter(
    "gc_http_requests_total",
    "HTTP requests answered by the GC, by method, route template and status code.",
    ["method", "route", "code"],
)
HTTP_DURATION = Histogram(
    "gc_http_request_duration_seconds",
    "Time the GC took to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the first route matching `scope` (also when only its method
    differs: that answer is a 405 of that route), else `UNMATCHED`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match in (Match.FULL, Match.PARTIAL):
            return str(getattr(route, "path", UNMATCHED)) or "/"
    return UNMATCHED


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request (see the module doc)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = route_template(self.routes, scope)
        status = 500  # an exception that escapes every handler is answered 500 by the server
        started = time.perf_counter()

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


def _documented(route: BaseRoute) -> list[tuple[str, str, str]]:
    """(method, template, code) of each documented answer of `route`."""
    if not isinstance(route, Route) or not route.methods:
        return []
    codes = {str(getattr(route, "status_code", None) or 200)}
    codes.update(str(code) for code in getattr(route, "responses", {}) if str(code).isdigit())
    return [(m, route.path, c) for m in sorted(route.methods) if m != "HEAD" for c in codes]


def install_http_metrics(app: Starlette) -> None:
    """Count every request of `app` (call it after every other middleware is added, so that
    this one runs first); the documented answers' series start at 0."""
    for route in app.routes:
        for method, template, code in _documented(route):
            HTTP_REQUESTS.labels(method, template, code)
            HTTP_DURATION.labels(method, template)
    app.add_middleware(HttpMetrics, routes=app.router.routes)
