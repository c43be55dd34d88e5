"""A server span per HTTP request (an ASGI middleware every `HttpServer` wraps its app in).

The span continues the client's trace when the request carries a valid W3C `traceparent`
(`darktower.runtime.tracing.extract`), else starts a fresh one. Its name is the method and the
route template once routing has matched (`POST /v1/meetings/{meeting_id}/join`), so names stay
few (a path no route matches is named by its method alone); it records the method, the path
(its first `MAX_PATH_CHARS`), the route and the status (5xx: ERROR). Neither the query
string nor any header is recorded: both can carry credentials. Health probes and metric
scrapes (`UNTRACED_PREFIXES`) are not traced.

Newer FastAPI versions trace requests themselves once a tracer provider is installed (with the
global propagators, baggage included, and the query string as an attribute). The middleware
turns that off for every request (`scope["fastapi.telemetry"]`, FastAPI's own marker of a
request it must not trace again), so a request has one server span, the same on every FastAPI
version.

Each traced request is one DEBUG line on `darktower.requests` (method, route, status, time),
which JSON logs tie to the trace.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darktower.runtime.tracing import extract, started_span

__all__ = ["MAX_PATH_CHARS", "UNTRACED_PREFIXES", "TracedHttpApp"]

log = logging.getLogger("darktower.requests")

UNTRACED_PREFIXES = ("/health/", "/metrics")
# A client picks the path: what a span keeps of it is bounded.
MAX_PATH_CHARS = 256


def _route_template(scope: Scope) -> str | None:
    """The matched route's path template; routers write the route into the scope."""
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else None


class TracedHttpApp:
    """`app` with a SERVER span around each HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket"):
            scope["fastapi.telemetry"] = None
        if scope["type"] != "http" or path.startswith(UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        status = 500  # what the client sees if the app fails before answering
        started = time.perf_counter()

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with started_span(
            method,
            context=extract(scope.get("headers", ())),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path[:MAX_PATH_CHARS],
                "url.scheme": str(scope.get("scheme", "http")),
            },
        ) as span:
            try:
                await self.app(scope, receive, send_traced)
            finally:
                template = _route_template(scope)
                if template is not None:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                log.debug(
                    "%s %s -> %d in %.1f ms",
                    method,
                    template or path,
                    status,
                    (time.perf_counter() - started) * 1000,
                )
