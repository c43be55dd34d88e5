"""Serving one of the GC's static pages: an HTML page at a path, its assets under another.

The dashboard, the join page and the API documentation are each a package with a `static/`
directory read through `importlib.resources`, so they work from a wheel as well as from a source
checkout. Each page is sent with its own Content-Security-Policy, never cached without
revalidation, and never sniffed as another content type.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["mount_static_page"]


def mount_static_page(
    app: FastAPI,
    *,
    package: str,
    page: str,
    path: str,
    static_path: str,
    csp: str,
    name: str,
    extra_headers: Mapping[str, str] | None = None,
) -> None:
    """Serve `package`'s `static/<page>` at `GET path` and its `static/` files under
    `static_path`; the route is named `name` and the mount `<name>-static` (with `-` for `_`).

    The page is read once, here; `extra_headers` are added to the page's response."""
    html = resources.files(package).joinpath("static", page).read_text("utf-8")
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        **(extra_headers or {}),
    }

    async def serve_page() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    app.get(path, include_in_schema=False, name=name)(serve_page)
    app.mount(
        static_path,
        StaticFiles(packages=[(package, "static")]),
        name=f"{name.replace('_', '-')}-static",
    )
