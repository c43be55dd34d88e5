"""The GC's client of MCs: one reused channel per MC endpoint, a GC token on every call.

Each MC gets tokens of its own: `aud` = that MC's id (one `ServiceTokenProvider` per MC,
made on first use and kept), so a token captured by one MC is refused by every other.

The meeting API's commands (`command`, `roster`) raise `McCallFailed` with a reason
("unreachable", "timeout", "unsupported" for an MC that predates them, "state_unavailable"
for an MC whose Redis failed, "error:<CODE>")
instead of answering: the HTTP edge must never report a command that did not happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import grpc

from darktower.auth.client import ServiceTokenProvider
from darktower.common.meeting_settings import MeetingSettings
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig, describe_rpc_error
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["AssignOutcome", "CommandOutcome", "McCallFailed", "McClient", "MhTargetSpec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MhTargetSpec:
    mh_id: str
    webtransport_endpoint: str
    role: pb.MhRole.ValueType
    # Where the MC calls the MH's MediaHandlerService (registering participants).
    grpc_endpoint: str = ""


@dataclass(frozen=True, slots=True)
class AssignOutcome:
    """accepted, or refused with a reason ("at_capacity", "draining", "unhealthy",
    "timeout", "unavailable", "error:<CODE>")."""

    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """`hosted` false: the MC does not host the meeting. `affected`: participant sessions
    reached."""

    hosted: bool
    affected: int = 0


class McCallFailed(Exception):
    """A meeting API call did not get an answer from the MC; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Command = Literal["end", "remove", "mute"]
# What an MC answers (UNAVAILABLE) when its Redis failed (the MC's `StateUnavailable`).
MC_STATE_UNAVAILABLE = "meeting state store unavailable"


def _failure(endpoint: str, exc: grpc.aio.AioRpcError) -> McCallFailed:
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return McCallFailed("timeout")
    if code == grpc.StatusCode.UNAVAILABLE:
        if exc.details() == MC_STATE_UNAVAILABLE:
            return McCallFailed("state_unavailable")
        why = describe_rpc_error(endpoint, exc)
        if why != code.name:
            log.warning("cannot reach the MC at %s: %s", endpoint, why)
        return McCallFailed("unreachable")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return McCallFailed("unsupported")
    return McCallFailed(f"error:{code.name}")


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
        self,
        endpoint: str,
        meeting_id: str,
        mhs: Sequence[MhTargetSpec],
        *,
        mc_id: str,
        settings: MeetingSettings | None = None,
    ) -> AssignOutcome:
        """Ask MC `mc_id` at `endpoint` to host the meeting, with a token for that MC only;
        never raises for the MC's faults. `settings`: the meeting API's, sent when given."""
        request = pb.AssignMeetingWithMhRequest(
            meeting_id=meeting_id,
            mh_assignments=[
                pb.MhAssignment(
                    mh_id=m.mh_id,
                    webtransport_endpoint=m.webtransport_endpoint,
                    role=m.role,
                    grpc_endpoint=m.grpc_endpoint,
                )
                for m in mhs
            ],
            requesting_gc_id=self._gc_id,
        )
        if settings is not None:
            request.settings.CopyFrom(
                pb.MeetingSettings(
                    max_participants=settings.max_participants or 0,
                    empty_timeout_seconds=settings.empty_timeout_seconds or 0,
                    metadata=settings.metadata or "",
                )
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

    async def command(
        self,
        endpoint: str,
        command: Command,
        meeting_id: str,
        *,
        mc_id: str,
        identity: str = "",
        muted: bool = False,
    ) -> CommandOutcome:
        """End the meeting, or remove / mute `identity` in it, on MC `mc_id`; McCallFailed
        when the MC gave no answer."""
        request = pb.MeetingCommandRequest(
            meeting_id=meeting_id, identity=identity, muted=muted, requesting_gc_id=self._gc_id
        )
        stub = self._stub(endpoint)
        call = {
            "end": stub.EndMeeting,
            "remove": stub.RemoveParticipant,
            "mute": stub.MuteParticipant,
        }[command]
        try:
            answer = await call(request, metadata=self._metadata(mc_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _failure(endpoint, exc) from None
        except ValueError:
            raise McCallFailed("bad_endpoint") from None
        return CommandOutcome(answer.hosted, answer.affected)

    async def roster(
        self, endpoint: str, meeting_id: str, *, mc_id: str, timeout: float | None = None
    ) -> pb.MeetingRosterResponse:
        """The meeting's live roster and settings on MC `mc_id`; McCallFailed when the MC gave
        no answer (within `timeout`, default the client's)."""
        request = pb.MeetingCommandRequest(meeting_id=meeting_id, requesting_gc_id=self._gc_id)
        try:
            return await self._stub(endpoint).GetMeetingRoster(
                request, metadata=self._metadata(mc_id), timeout=timeout or self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(endpoint, exc) from None
        except ValueError:
            raise McCallFailed("bad_endpoint") from None

    async def drain(self, endpoint: str, *, mc_id: str) -> int | str:
        """Ask MC `mc_id` to drain (an operator's, README "Rolling upgrades"): the meetings it
        hosted, or why not — "mc_unreachable", "mc_unsupported" or "mc_refused"."""
        request = pb.DrainControllerRequest(requesting_gc_id=self._gc_id)
        try:
            answer = await self._stub(endpoint).DrainController(
                request, metadata=self._metadata(mc_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "mc_unsupported"
            log.warning("drain of %s failed: %s", mc_id, describe_rpc_error(endpoint, exc))
            return "mc_unreachable"
        except ValueError:
            return "mc_unreachable"
        return answer.meetings if answer.accepted else "mc_refused"

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)
