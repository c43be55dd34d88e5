"""A small fleet for the end-to-end benchmarks: one GC, MC processes registered with it and
simulated MHs, all on one embedded Redis (`BenchFleet`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

from bench.context import BenchContext
from bench.hosting import Host
from bench.http_clients import ClientPool

__all__ = ["BenchFleet"]


class BenchFleet:
    """A GC, `mcs` MC processes registered with it and one process of `mhs` simulated MHs,
    all on one embedded Redis; `join` places a meeting over the GC's HTTP API. The GC uses
    `database_url` (`bench.database`), or a SQLite file of its own when empty."""

    def __init__(
        self,
        ctx: BenchContext,
        redis_url: str,
        *,
        mcs: int,
        mhs: int = 2,
        heartbeat_ms: int = 1000,
        staleness_s: float = 30.0,
        mc_params: Mapping[str, Any] | None = None,
        database_url: str = "",
    ) -> None:
        self.ctx = ctx
        self.gc = ctx.host(
            "gc",
            "bench.services:gc_service",
            {
                "staleness_s": staleness_s,
                "sweep_s": min(1.0, staleness_s / 3),
                "fast_ms": heartbeat_ms,
                "comprehensive_ms": heartbeat_ms * 3,
                "database_url": database_url,
            },
        )
        self._mc_params = {"redis_url": redis_url, **(mc_params or {})}
        self._mc_count = mcs
        self._mh_count = mhs
        self.mcs: dict[str, Host] = {}
        self.mh: Host | None = None
        self.http: httpx.AsyncClient | None = None
        self.joins: ClientPool | None = None

    @property
    def gc_url(self) -> str:
        return f"http://127.0.0.1:{self.gc.info['http_port']}"

    async def __aenter__(self) -> BenchFleet:
        try:
            await self.gc.start()
            gc_grpc = f"http://127.0.0.1:{self.gc.info['grpc_port']}"
            for i in range(self._mc_count):
                mc_id = f"mc-{i + 1}"
                params = {**self._mc_params, "id": mc_id, "gc_endpoint": gc_grpc}
                self.mcs[mc_id] = self.ctx.host(mc_id, "bench.services:mc_service", params)
            self.mh = self.ctx.host(
                "mhs",
                "bench.services:mh_service",
                {"gc_endpoint": gc_grpc, "count": self._mh_count},
            )
            await asyncio.gather(*(h.start() for h in (*self.mcs.values(), self.mh)))
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            self.http = httpx.AsyncClient(base_url=self.gc_url, timeout=15.0, limits=limits)
            self.joins = ClientPool(self.gc_url)
            await self.wait_healthy(set(self.mcs))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.joins is not None:
            await self.joins.aclose()
        if self.http is not None:
            await self.http.aclose()
        others = [h for h in (*self.mcs.values(), self.mh) if h is not None]
        await asyncio.gather(*(h.stop() for h in others), return_exceptions=True)
        await self.gc.stop()

    async def wait_healthy(self, mc_ids: set[str], timeout: float = 60.0) -> None:
        """Until the GC sees every MC of `mc_ids` and every MH healthy."""
        assert self.http is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            controllers = (await self.http.get("/v1/controllers")).json()
            handlers = (await self.http.get("/v1/media-handlers")).json()
            mcs_ok = {c["id"] for c in controllers if c["health"] == "healthy"} >= mc_ids
            mhs_ok = sum(h["health"] == "healthy" for h in handlers) >= self._mh_count
            if mcs_ok and mhs_ok:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"fleet not healthy within {timeout:.0f}s: {controllers} {handlers}")

    async def join(self, meeting_id: str) -> dict[str, Any]:
        """POST /v1/meetings/{id}/join (a client of its own per join in flight,
        `ClientPool`); the JSON answer, or RuntimeError for a non-200."""
        assert self.joins is not None
        response = await self.joins.post(f"/v1/meetings/{meeting_id}/join")
        if response.status_code != 200:
            raise RuntimeError(f"join {meeting_id}: HTTP {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    async def meetings_on(self, mc_id: str, count: int, prefix: str) -> list[str]:
        """Join new meetings `<prefix>-<i>` until `count` of them were placed on `mc_id` (the
        GC spreads them: at most 20 tries per meeting wanted); RuntimeError if too few were."""
        placed: list[str] = []
        for i in range(count * 20):
            if len(placed) == count:
                break
            answer = await self.join(f"{prefix}-{i}")
            if answer["mc_id"] == mc_id:
                placed.append(answer["meeting_id"])
        if len(placed) < count:
            raise RuntimeError(f"only {len(placed)} meetings landed on {mc_id}")
        return placed
