"""The join page: served by the GC at `/join` with its assets, a CSP that lets it reach the
GC and the MC's WebSocket only, nothing from another origin, no markup written from data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources

import httpx
import pytest
from fastapi import FastAPI

from darktower.gc.dashboard import mount_dashboard
from darktower.gc.join_page import JOIN_PAGE_CSP, mount_join_page

pytestmark = pytest.mark.timeout(30)

ASSETS = ("join.html", "join.js", "media.js", "join.css")


def _asset(name: str) -> str:
    return resources.files("darktower.gc.join_page").joinpath("static", name).read_text("utf-8")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.post("/v1/meetings/{meeting_id}/join")
    async def join(meeting_id: str) -> dict[str, str]:
        return {"meeting_id": meeting_id}

    mount_join_page(app)
    mount_dashboard(app)  # as in the GC: both pages side by side
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as c:
        yield c


async def test_the_page_is_served_with_its_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/join", params={"meeting": "standup", "name": "Ada"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == _asset("join.html")
    assert response.headers["x-content-type-options"] == "nosniff"
    header = response.headers["content-security-policy"]
    csp = {d.partition(" ")[0]: d.partition(" ")[2] for d in header.split("; ")}
    assert response.headers["content-security-policy"] == JOIN_PAGE_CSP
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self' ws: wss:"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]


async def test_the_page_has_its_form_and_stable_selectors(client: httpx.AsyncClient) -> None:
    page = (await client.get("/join")).text
    for element_id in ("join-form", "meeting", "name", "join", "leave", "mute", "status", "roster"):
        assert f'id="{element_id}"' in page
    assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP forbids it


@pytest.mark.parametrize(
    ("name", "content_type"), [("join.js", "text/javascript"), ("join.css", "text/css")]
)
async def test_assets_are_served_from_the_package(
    client: httpx.AsyncClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/join/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.text == _asset(name)


async def test_the_page_links_its_assets_relatively_and_they_resolve(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/join")).text
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', page) if not r.startswith("data:")]
    assert sorted(refs) == ["join/static/join.css", "join/static/join.js", "join/static/media.js"]
    for ref in refs:
        # Relative to /join, as the browser resolves them.
        assert (await client.get("/" + ref)).status_code == 200
    assert (await client.get("/join/static/nope.js")).status_code == 404
    assert (await client.get("/")).status_code == 200  # the dashboard is still at the root


@pytest.mark.parametrize("name", ASSETS)
def test_no_asset_refers_to_another_origin(name: str) -> None:
    text = _asset(name)
    assert re.findall(r"(?:https?|wss?)://", text, re.IGNORECASE) == []
    assert re.findall(r"""(?:["'(=]\s*)//[\w.-]""", text) == []
    assert "@import" not in text and "@font-face" not in text


def test_the_script_talks_only_to_the_join_api_and_the_answered_socket() -> None:
    script = _asset("join.js")
    assert script.count("fetch(") == 1
    assert '"v1/meetings/" + encodeURIComponent(state.meetingId) + "/join"' in script
    assert script.count("new WebSocket(") == 1
    assert "new WebSocket(answer.signaling_url)" in script


@pytest.mark.parametrize(
    "sink",
    ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("],
)
def test_the_scripts_never_write_markup(sink: str) -> None:
    for script in ("join.js", "media.js"):
        assert sink not in _asset(script), script
