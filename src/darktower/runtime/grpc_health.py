"""The standard gRPC health service (`grpc.health.v1.Health`) and, behind a setting, server
reflection, on a service's gRPC server.

`GrpcHealth` follows the service's readiness: every `REFRESH_SECONDS` it asks the same
`ready()` the HTTP `/health/ready` answers and sets the overall status ("") and each served
service's status to SERVING or NOT_SERVING; `shutdown()` (a drain or a stop) sets NOT_SERVING
at once and for good. So a Kubernetes `grpc:` probe, or `grpcurl … grpc.health.v1.Health/Check`,
sees what the HTTP probe sees, within a second.

`Check` is the one method answered without a service token (the kubelet has none):
`darktower.auth.interceptor.UNAUTHENTICATED_METHODS`. It reads one dictionary entry, so a flood
of unauthenticated checks costs no Redis or database work — the readiness check runs on the
refresh loop only. `Watch` (a stream that would hold one of the server's concurrent-call slots
for as long as the caller likes) and `List` need a token like every other method.

Reflection (`grpc.reflection.v1alpha`, which grpcurl falls back to) lists the served services
and their message types; it is off by default (`MC_GRPC_REFLECTION` / `GC_GRPC_REFLECTION`), on
in `darktower dev`, and behind the service token when on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from darktower.runtime.supervisor import TaskSupervisor

__all__ = [
    "HEALTH_CHECK_METHOD",
    "HEALTH_SERVICE",
    "REFRESH_SECONDS",
    "TASK_NAME",
    "GrpcHealth",
    "ReadyCheck",
]

log = logging.getLogger(__name__)

HEALTH_SERVICE = health.SERVICE_NAME  # "grpc.health.v1.Health"
HEALTH_CHECK_METHOD = f"/{HEALTH_SERVICE}/Check"
REFRESH_SECONDS = 1.0
TASK_NAME = "grpc-health"
"""The refresh loop's name in the service's `TaskSupervisor`."""

ReadyCheck = Callable[[], "tuple[bool, str] | Awaitable[tuple[bool, str]]"]
"""The service's readiness, as `/health/ready` answers it (sync for the MC, async for the GC)."""


class _AioHealthServicer(Protocol):
    """What is used of grpc_health's asyncio servicer (its type stubs know only the sync one)."""

    async def set(self, service: str, status: Any) -> None: ...

    async def enter_graceful_shutdown(self) -> None: ...


_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcHealth:
    """`grpc.health.v1.Health` for `services` (full names, e.g.
    `dark_tower.internal.MeetingControllerService`) following `ready`, and reflection when
    `reflection_on` (see the module doc)."""

    def __init__(
        self, ready: ReadyCheck, *, services: Sequence[str], reflection_on: bool = False
    ) -> None:
        self._ready = ready
        self._services = ("", *services)
        self.reflection_on = reflection_on
        self.servicer = cast(_AioHealthServicer, getattr(health, "aio").HealthServicer())  # noqa: B009
        self._shut_down = False
        self.serving: bool | None = None

    @property
    def descriptors(self) -> list[ServiceDescriptor]:
        """The services `add_to` adds (for the gRPC metrics' method labels)."""
        found = [health_pb2.DESCRIPTOR.services_by_name["Health"]]
        if self.reflection_on:
            found.append(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
        return found

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve health (see `start`) and, when on, reflection."""
        health_pb2_grpc.add_HealthServicer_to_server(
            cast(health_pb2_grpc.HealthServicer, self.servicer), server
        )
        if self.reflection_on:
            reflection.enable_server_reflection(
                (*self._services[1:], HEALTH_SERVICE, reflection.SERVICE_NAME), server
            )

    async def refresh(self) -> bool:
        """Ask `ready()` once and publish the answer; the status published."""
        if self._shut_down:
            return False
        try:
            answer = self._ready()
            ok, _ = await answer if inspect.isawaitable(answer) else answer
        except Exception:
            log.exception("gRPC health: readiness check failed")
            ok = False
        await self._publish(ok)
        return ok

    async def _publish(self, ok: bool) -> None:
        if self._shut_down or ok == self.serving:
            return
        self.serving = ok
        for service in self._services:
            await self.servicer.set(service, _SERVING if ok else _NOT_SERVING)
        log.info("gRPC health: %s", "SERVING" if ok else "NOT_SERVING")

    async def start(self, tasks: TaskSupervisor) -> None:
        """Publish the readiness now, then keep it current (task `TASK_NAME` of `tasks`). Call
        it before the server starts: until then the health servicer's overall status is its
        library default, SERVING."""
        await self.refresh()
        tasks.spawn(TASK_NAME, self._loop())

    async def _loop(self) -> None:
        # Runs until the service's stop cancels it (after `shutdown`, refreshing does nothing).
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()

    async def shutdown(self) -> None:
        """NOT_SERVING from now on (a drain or a stop); later refreshes change nothing."""
        if self._shut_down:
            return
        await self._publish(False)
        self._shut_down = True
        with contextlib.suppress(Exception):
            # Also ends open Watch streams with NOT_SERVING.
            await self.servicer.enter_graceful_shutdown()
