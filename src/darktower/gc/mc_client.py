"""The GC's client of MCs: one reused channel per MC endpoint, a GC token on every call.

Each MC gets tokens of its own: `aud` = that MC's id (one `ServiceTokenProvider` per MC,
made on first use and kept), so a token captured by one MC is refused by every other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from darktower.auth.client import ServiceTokenProvider
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig, describe_rpc_error
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["AssignOutcome", "McClient", "MhTargetSpec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MhTargetSpec:
    mh_id: str
    webtransport_endpoint: str
    role: pb.MhRole.ValueType


@dataclass(frozen=True, slots=True)
class AssignOutcome:
    """accepted, or refused with a reason ("at_capacity", "draining", "unhealthy",
    "timeout", "unavailable", "error:<CODE>")."""

    accepted: bool
    reason: str = ""


_REASONS = {
    pb.REJECTION_REASON_AT_CAPACITY: "at_capacity",
    pb.REJECTION_REASON_DRAINING: "draining",
    pb.REJECTION_REASON_UNHEALTHY: "unhealthy",
}


class McClient:
    def __init__(
        self,
        tokens: ServiceTokenProvider | Callable[[str], ServiceTokenProvider],
        *,
        gc_id: str,
        timeout: float = 10.0,
        tls: TlsConfig | None = None,
    ) -> None:
        """`tokens`: a provider per MC id (called once per MC, its provider kept), or one
        provider for every MC (tokens without an audience: tests of MCs that check none).
        `tls`: the CA that verifies https:// MCs and the certificate presented to them."""
        self._tokens_for = tokens if not isinstance(tokens, ServiceTokenProvider) else None
        self._shared = tokens if isinstance(tokens, ServiceTokenProvider) else None
        self._providers: dict[str, ServiceTokenProvider] = {}
        self._tls = tls
        self._gc_id = gc_id
        self._timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, endpoint: str) -> pb_grpc.MeetingControllerServiceAsyncStub:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = channel_for(endpoint, tls=self._tls)
        return pb_grpc.MeetingControllerServiceStub(channel)

    def _metadata(self, mc_id: str) -> tuple[tuple[str, str], ...]:
        if self._shared is not None:
            return self._shared.metadata()
        assert self._tokens_for is not None
        provider = self._providers.get(mc_id)
        if provider is None:
            provider = self._providers[mc_id] = self._tokens_for(mc_id)
        return provider.metadata()

    async def assign(
        self, endpoint: str, meeting_id: str, mhs: Sequence[MhTargetSpec], *, mc_id: str
    ) -> AssignOutcome:
        """Ask MC `mc_id` at `endpoint` to host the meeting, with a token for that MC only;
        never raises for the MC's faults."""
        request = pb.AssignMeetingWithMhRequest(
            meeting_id=meeting_id,
            mh_assignments=[
                pb.MhAssignment(
                    mh_id=m.mh_id, webtransport_endpoint=m.webtransport_endpoint, role=m.role
                )
                for m in mhs
            ],
            requesting_gc_id=self._gc_id,
        )
        try:
            answer = await self._stub(endpoint).AssignMeetingWithMh(
                request, metadata=self._metadata(mc_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return AssignOutcome(False, "timeout")
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                why = describe_rpc_error(endpoint, exc)
                if why != exc.code().name:  # a TLS problem: say which, naming the MC
                    log.warning("cannot reach the MC at %s: %s", endpoint, why)
                return AssignOutcome(False, "unavailable")
            return AssignOutcome(False, f"error:{exc.code().name}")
        except ValueError:
            return AssignOutcome(False, "bad_endpoint")
        if answer.accepted:
            return AssignOutcome(True)
        return AssignOutcome(False, _REASONS.get(answer.rejection_reason, "refused"))

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)
