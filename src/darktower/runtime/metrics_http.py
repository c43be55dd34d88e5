"""The `/metrics` answer of every service: Prometheus text, or OpenMetrics when the scraper
asks for it (`Accept: application/openmetrics-text`, as Prometheus does by default).

Importing this module turns off prometheus_client's `*_created` series for the whole process:
they doubled every counter and histogram family, and nothing reads them (a counter's reset is
seen by `rate()` itself).
"""

from __future__ import annotations

from fastapi import Request, Response
from prometheus_client import REGISTRY, disable_created_metrics
from prometheus_client.exposition import choose_encoder

__all__ = ["metrics_response"]

disable_created_metrics()  # type: ignore[no-untyped-call]


def metrics_response(request: Request) -> Response:
    """The default registry, encoded as the request's `Accept` header prefers."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(REGISTRY), headers={"Content-Type": content_type})
