"""`MhSimulator`: what a media handler does towards the GC, without any media.

Registration is retried with the registration backoff schedule (`darktower.common.backoff`,
tenacity) for as long as it runs; load reports follow at the interval the GC answers, start
to start. The load is a bounded random walk around a target share of `max_streams`, so
dashboards and placement see something that moves.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import grpc
from tenacity import AsyncRetrying, RetryCallState

from darktower.auth.client import ServiceTokenProvider
from darktower.common.backoff import RegistrationBackoff
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig, describe_rpc_error
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["MhConfig", "MhSimulator", "next_load", "next_report_delay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MhConfig:
    handler_id: str
    region: str
    zone: str
    webtransport_endpoint: str
    grpc_endpoint: str
    max_streams: int = 1000
    target_load: float = 0.3  # share of max_streams the walk drifts toward


def next_load(current: int, config: MhConfig, rng: random.Random) -> int:
    """One step of the walk: drift toward the target, a little noise, within [0, max]."""
    target = config.target_load * config.max_streams
    step = 0.2 * (target - current) + rng.gauss(0, 0.03 * config.max_streams)
    return max(0, min(config.max_streams, round(current + step)))


def next_report_delay(interval: float, took: float) -> float:
    """How long to wait after a report that took `took` seconds so the next one starts
    `interval` after it started; none if it took longer than that."""
    return max(0.0, interval - took)


class MhSimulator:
    def __init__(
        self,
        gc_endpoint: str,
        config: MhConfig,
        tokens: ServiceTokenProvider,
        *,
        rng: random.Random | None = None,
        backoff: RegistrationBackoff | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        """`tls`: the CA that verifies an https:// GC, and the certificate shown to it."""
        self.config = config
        self._tokens = tokens
        self._gc_endpoint = gc_endpoint
        self._channel = channel_for(gc_endpoint, tls=tls)
        self._stub = pb_grpc.MediaHandlerRegistryServiceStub(self._channel)
        self._rng = rng or random.Random()  # noqa: S311 - simulated load, not cryptography
        self._backoff = backoff or RegistrationBackoff()
        self.streams = 0
        self.report_interval = 10.0
        self.registered = False

    async def register(self) -> None:
        c = self.config
        request = pb.RegisterMHRequest(
            handler_id=c.handler_id,
            region=c.region,
            webtransport_endpoint=c.webtransport_endpoint,
            grpc_endpoint=c.grpc_endpoint,
            max_streams=c.max_streams,
            zone=c.zone,
        )
        retrying = AsyncRetrying(wait=self._backoff, before_sleep=self._log_retry, reraise=True)
        async for attempt in retrying:
            with attempt:
                answer = await self._stub.RegisterMH(
                    request, metadata=self._tokens.metadata(), timeout=10
                )
                if not answer.accepted:
                    raise RuntimeError(f"registration refused: {answer.message}")
        self.report_interval = (answer.load_report_interval_ms or 10_000) / 1000
        self.registered = True
        log.info("MH %s registered (reports every %.1fs)", c.handler_id, self.report_interval)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, grpc.aio.AioRpcError):
            why = describe_rpc_error(self._gc_endpoint, exc)
            log.warning("cannot register with the GC at %s: %s", self._gc_endpoint, why)

    async def report(self) -> None:
        self.streams = next_load(self.streams, self.config, self._rng)
        load = self.streams / max(1, self.config.max_streams)
        await self._stub.SendLoadReport(
            pb.MHLoadReportRequest(
                handler_id=self.config.handler_id,
                current_streams=self.streams,
                health=pb.DEGRADED if load >= 0.8 else pb.HEALTHY,
                cpu_usage_percent=min(100.0, 10 + 80 * load),
                memory_usage_percent=min(100.0, 20 + 50 * load),
                bandwidth_usage_percent=min(100.0, 100 * load),
            ),
            metadata=self._tokens.metadata(),
            timeout=10,
        )

    async def run(self) -> None:
        """Register, then report forever; a GC that forgot us (NOT_FOUND) gets a new
        registration, any other failure is logged and the reports go on.

        Reports keep their cadence start to start: the time a report takes is subtracted from
        the wait for the next one (`next_report_delay`), so a slow GC does not space them out
        by its own delay (the GC judges an MH silent by the gaps between reports received)."""
        loop = asyncio.get_running_loop()
        while True:
            await self.register()
            while self.registered:
                started = loop.time()
                try:
                    await self.report()
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        self.registered = False
                        break
                    log.warning("load report failed: %s", exc.code().name)
                await asyncio.sleep(next_report_delay(self.report_interval, loop.time() - started))

    async def aclose(self) -> None:
        await self._channel.close(None)
