"""The GC's API documentation, offline: a page at `/docs` that renders `/openapi.json`.

FastAPI's own `/docs` (Swagger UI) and `/redoc` load their scripts and styles from a CDN, so
they show nothing on a machine without internet and break the strict Content-Security-Policy
of the GC's other pages. This page is plain HTML, CSS and JavaScript shipped as package files
(`static/`), like the dashboard: it fetches the OpenAPI document from the GC itself and lists
every operation with its parameters, request body and responses, the schemas they use, and
a form to try an operation against this GC. (Swagger UI from the `swagger-ui-bundle` package
was tried: its 4.15 release cannot render OpenAPI 3.1, which FastAPI writes.)
"""

from __future__ import annotations

from darktower.gc.api_docs.routes import (
    API_DOCS_CSP,
    API_DOCS_PATH,
    API_DOCS_STATIC_PATH,
    mount_api_docs,
)

__all__ = ["API_DOCS_CSP", "API_DOCS_PATH", "API_DOCS_STATIC_PATH", "mount_api_docs"]
