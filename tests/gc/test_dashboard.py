"""The dashboard's assets: what `mount_dashboard` serves, and what the files may not contain.

The page must work on a machine with no internet: every asset comes from the GC itself, so no
file may name another origin, and the script may only write API strings as text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources

import httpx
import pytest
from fastapi import FastAPI

from darktower.gc.dashboard import CONTENT_SECURITY_POLICY, mount_dashboard

pytestmark = pytest.mark.timeout(30)

ASSETS = ("index.html", "dashboard.js", "dashboard.css")


def _asset(name: str) -> str:
    return resources.files("darktower.gc.dashboard").joinpath("static", name).read_text("utf-8")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.get("/v1/controllers")
    async def controllers() -> list[dict[str, str]]:
        return []

    mount_dashboard(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as c:
        yield c


async def test_the_page_is_served_at_the_root_as_html(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>darktower fleet</title>" in response.text
    assert response.text == _asset("index.html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")],
)
async def test_assets_are_served_from_the_package(
    client: httpx.AsyncClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.text == _asset(name)


async def test_the_page_links_its_assets_relatively_and_they_resolve(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    local = [ref for ref in refs if not ref.startswith("data:")]
    assert sorted(local) == ["static/dashboard.css", "static/dashboard.js"]
    for ref in local:
        assert (await client.get("/" + ref)).status_code == 200


async def test_an_unknown_asset_is_404_and_the_api_is_not_shadowed(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/static/nope.js")).status_code == 404
    response = await client.get("/v1/controllers")
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("name", ASSETS)
def test_no_asset_refers_to_another_origin(name: str) -> None:
    text = _asset(name)
    assert re.findall(r"https?://", text, re.IGNORECASE) == []
    # Protocol-relative URLs, CSS imports and web fonts would also reach out.
    assert re.findall(r"""(?:["'(=]\s*)//[\w.-]""", text) == []
    assert "@import" not in text and "@font-face" not in text


def test_the_script_fetches_only_the_gc_api_with_relative_urls() -> None:
    script = _asset("dashboard.js")
    paths = set(re.findall(r'"(v1/[^"]*)"', script))
    assert paths == {
        "v1/controllers",
        "v1/media-handlers",
        "v1/meetings?limit=100",
        "v1/placements/recent",
        "v1/webhooks",
    }
    assert "fetch(path" in script and script.count("fetch(") == 1


@pytest.mark.parametrize(
    "sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("]
)
def test_the_script_never_writes_markup(sink: str) -> None:
    assert sink not in _asset("dashboard.js")
