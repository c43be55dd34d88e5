"""The API documentation on the GC's real app: `/docs` is our offline page with the strict
CSP, its assets come from the package, no file names another origin, `/redoc` is gone, and
`/openapi.json` is still there (the page renders it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from darktower.gc.api_docs import API_DOCS_CSP
from darktower.gc.dashboard import CONTENT_SECURITY_POLICY
from tests.e2e.gc_app import gc_http_app

pytestmark = pytest.mark.timeout(30)

ASSETS = ("docs.html", "docs.js", "docs.css")


def _asset(name: str) -> str:
    return resources.files("darktower.gc.api_docs").joinpath("static", name).read_text("utf-8")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with gc_http_app(tmp_path) as gc:
        transport = httpx.ASGITransport(app=gc.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as c:
            yield c


async def test_docs_is_our_page_with_the_strict_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == _asset("docs.html")
    assert response.headers["content-security-policy"] == API_DOCS_CSP == CONTENT_SECURITY_POLICY
    csp = {d.partition(" ")[0]: d.partition(" ")[2] for d in API_DOCS_CSP.split("; ")}
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert "unsafe" not in API_DOCS_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    # Nothing inline: the CSP would refuse it.
    assert "<script>" not in response.text and "style=" not in response.text
    assert "<style" not in response.text
    assert re.search(r"\son[a-z]+\s*=", response.text) is None  # no inline event handler


async def test_the_page_links_its_assets_relatively_and_they_resolve(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/docs")).text
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', page) if not r.startswith("data:")]
    assert sorted(refs) == [
        ".",
        "docs/static/docs.css",
        "docs/static/docs.js",
        "join",
        "openapi.json",
    ]
    for ref, content_type in (
        ("docs/static/docs.js", "text/javascript"),
        ("docs/static/docs.css", "text/css"),
        ("openapi.json", "application/json"),
    ):
        response = await client.get("/" + ref)
        assert response.status_code == 200, ref
        assert response.headers["content-type"].split(";")[0] == content_type


async def test_redoc_is_gone_and_docs_is_not_in_the_schema(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    assert "/docs" not in spec["paths"] and "/v1/controllers" in spec["paths"]


@pytest.mark.parametrize("name", ASSETS)
def test_no_asset_refers_to_another_origin(name: str) -> None:
    text = _asset(name)
    assert re.findall(r"https?://", text, re.IGNORECASE) == []
    assert re.findall(r"""(?:["'(=]\s*)//[\w.-]""", text) == []
    assert "@import" not in text and "@font-face" not in text


@pytest.mark.parametrize(
    "sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("]
)
def test_the_script_never_writes_markup(sink: str) -> None:
    assert sink not in _asset("docs.js")


def test_the_script_fetches_only_relative_urls() -> None:
    script = _asset("docs.js")
    assert '"openapi.json"' in script
    assert script.count("fetch(") == 2  # the document, and the try-it call
    assert "fetch(SPEC_URL" in script and "fetch(url, init)" in script
