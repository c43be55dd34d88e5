"""The MC's client of the GC: one channel, an MC service token on every call, a deadline each."""

from __future__ import annotations

from darktower.auth.client import ServiceTokenProvider
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["CALL_TIMEOUT_SECONDS", "GcClient"]

CALL_TIMEOUT_SECONDS = 10.0


class GcClient:
    """Thin typed wrapper of GlobalControllerService; gRPC errors propagate as AioRpcError."""

    def __init__(
        self,
        endpoint: str,
        tokens: ServiceTokenProvider,
        *,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        connect_timeout: float = 5.0,
        tls: TlsConfig | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._tokens = tokens
        self._timeout = call_timeout
        self._channel = channel_for(endpoint, tls=tls, connect_timeout=connect_timeout)
        self._stub = pb_grpc.GlobalControllerServiceStub(self._channel)

    async def register(self, request: pb.RegisterMCRequest) -> pb.RegisterMCResponse:
        return await self._stub.RegisterMC(
            request, metadata=self._tokens.metadata(), timeout=self._timeout
        )

    async def fast_heartbeat(self, request: pb.FastHeartbeatRequest) -> pb.HeartbeatResponse:
        return await self._stub.FastHeartbeat(
            request, metadata=self._tokens.metadata(), timeout=self._timeout
        )

    async def comprehensive_heartbeat(
        self, request: pb.ComprehensiveHeartbeatRequest
    ) -> pb.HeartbeatResponse:
        return await self._stub.ComprehensiveHeartbeat(
            request, metadata=self._tokens.metadata(), timeout=self._timeout
        )

    async def notify_meeting_ended(
        self, request: pb.NotifyMeetingEndedRequest
    ) -> pb.NotifyMeetingEndedResponse:
        return await self._stub.NotifyMeetingEnded(
            request, metadata=self._tokens.metadata(), timeout=self._timeout
        )

    async def migrate_meeting(
        self, request: pb.MigrateMeetingRequest, *, timeout: float | None = None
    ) -> pb.MigrateMeetingResponse:
        return await self._stub.MigrateMeeting(
            request,
            metadata=self._tokens.metadata(),
            timeout=self._timeout if timeout is None else min(timeout, self._timeout),
        )

    async def aclose(self) -> None:
        await self._channel.close(None)
