"""The GC's real HTTP app on a real store, served by uvicorn in the test's loop on a free
loopback port, for the browser tests that need the GC's pages and API but no MC process.

`gc_http_app` builds `create_app` exactly as the GC does (store on a SQLite file, placement
service, join tokens signed with a fresh key); `serve_app` serves any FastAPI app and stops it
afterwards, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from darktower.auth.api_keys import ApiKeyRing
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.embedded.redis import free_port
from darktower.gc.access import GcAccess
from darktower.gc.http import create_app
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.limits import HttpLimits
from darktower.gc.mc_client import McClient
from darktower.gc.store import GcStore, sqlite_url
from darktower.runtime.serving import EmbeddedUvicorn

__all__ = ["GcHttpApp", "gc_http_app", "serve_app"]

REGION = "test"


@dataclass(frozen=True)
class GcHttpApp:
    app: FastAPI
    store: GcStore
    region: str


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = EmbeddedUvicorn(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def gc_http_app(
    tmp_path: Path, *, limits: HttpLimits | None = None, access: GcAccess | None = None
) -> AsyncIterator[GcHttpApp]:
    """The GC's HTTP app on an empty store in `tmp_path` (region `test`, GC `gc-1`), with
    `limits` (the defaults if None) and `access` (None: no API keys, guests allowed, as in a
    dev fleet)."""
    store = await GcStore.open(sqlite_url(tmp_path / "gc.sqlite3"))
    keys = tmp_path / "keys"
    generate_key_files(keys)
    key = load_private_key(keys / "gc.key")
    service_type, scope = SERVICE_PROFILES["gc"]
    mc_client = McClient(
        ServiceTokenProvider(key, service_type=service_type, scope=scope, issuer="gc-1"),
        gc_id="gc-1",
    )
    try:
        placement = PlacementService(
            store,
            mc_client,
            join_tokens=JoinTokenIssuer(key, issuer="gc-1"),
            gc_id="gc-1",
            region=REGION,
            staleness_s=30,
        )

        async def ready() -> tuple[bool, str]:
            return True, ""

        app = create_app(
            store,
            placement,
            region=REGION,
            is_ready=ready,
            access=access or GcAccess(ApiKeyRing(), allow_guests=True),
            limits=limits,
        )
        yield GcHttpApp(app=app, store=store, region=REGION)
    finally:
        await mc_client.aclose()
        await store.aclose()
