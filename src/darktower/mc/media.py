"""The MC's side of media: registering participants with the meeting's media handlers.

When a participant is admitted, `MediaRegistrar.grants` calls `MediaHandlerService.Register`
on every MH of the meeting that has a gRPC endpoint (the primary and its backups, at once,
each with a short deadline) and returns one `MediaGrant` (`darktower.signaling.protocol`) per
MH that answered: where the client connects (`url`, an http(s) URL whose ws(s) form is the
Janus WebSocket), the room and the token that admits exactly this participant into exactly
this room. They go to the client in
its `join_answer` (`media`, docs/wire-protocol.md): it connects to the primary and moves to a
backup when the primary fails. An MH that does not answer is left out (logged); no MH at all
means a meeting without media, signaling unaffected.

When the meeting ends, `end` tells every MH (EndMeeting), so rooms and tokens go at once; when
a participant leaves for good (left, timed out, removed), `leave` revokes its tokens. When the
meeting's primary MH changes (`move`: it went down, see `darktower.mc.media_watch`), every
connected participant is registered on the remaining MHs anew and told (`media_update`). A host
mute goes to every MH too (`mute`): Janus stops forwarding that participant's audio, so a
modified client that ignores its `muted` frame is not heard anyway.

Calls carry MC service tokens minted for each MH (`aud` = the MH's id, scope
`service.write.mh`): a token for one MH is refused by every other. An `https://` MH is called
over TLS (the MC's CA, its certificate for mTLS); a failed call is logged naming the MH, its
endpoint and the reason (a TLS handshake's, `darktower.runtime.tls.describe_rpc_error`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
import grpc.aio

from darktower.auth.client import ServiceTokenProvider, SigningKey
from darktower.auth.service_types import ServiceType
from darktower.auth.tokens import SCOPE_MH
from darktower.mc.validation import MhTarget
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig, describe_rpc_error
from darktower.signaling.protocol import MediaGrant, MediaUpdate
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["MediaRegistrar", "primary_of"]

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_SECONDS = 2.0
# Channels kept open (one per MH endpoint); beyond, the least recently used one is closed.
MAX_CHANNELS = 64


def primary_of(mhs: Sequence[MhTarget]) -> str | None:
    """The id of the MH whose grant comes first (the first one the MC can register with)."""
    return next((m.mh_id for m in mhs if m.grpc_endpoint), None)


class MediaRegistrar:
    def __init__(
        self,
        signing_key: SigningKey,
        mc_id: str,
        *,
        tls: TlsConfig | None = None,
        timeout: float = REGISTER_TIMEOUT_SECONDS,
    ) -> None:
        self._key = signing_key
        self._mc_id = mc_id
        self._tls = tls
        self._timeout = timeout
        self._tokens: dict[str, ServiceTokenProvider] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _metadata(self, mh_id: str) -> tuple[tuple[str, str], ...]:
        provider = self._tokens.get(mh_id)
        if provider is None:
            provider = self._tokens[mh_id] = ServiceTokenProvider(
                self._key,
                service_type=ServiceType.MEETING_CONTROLLER,
                scope=SCOPE_MH,
                issuer=self._mc_id,
                subject=self._mc_id,
                audience=mh_id,
            )
        return provider.metadata()

    def _stub(self, endpoint: str) -> pb_grpc.MediaHandlerServiceAsyncStub:
        channel = self._channels.pop(endpoint, None)
        if channel is None:
            if len(self._channels) >= MAX_CHANNELS:
                oldest = next(iter(self._channels))
                asyncio.get_running_loop().create_task(self._channels.pop(oldest).close(None))
            channel = channel_for(endpoint, tls=self._tls)
        self._channels[endpoint] = channel  # most recently used last
        stub: pb_grpc.MediaHandlerServiceAsyncStub = pb_grpc.MediaHandlerServiceStub(channel)
        return stub

    async def _register(
        self, mh: MhTarget, meeting_id: str, participant_id: str, keep_token: bool
    ) -> MediaGrant | None:
        try:
            answer = await self._stub(mh.grpc_endpoint).Register(
                pb.RegisterParticipant(
                    meeting_id=meeting_id, participant_id=participant_id, keep_token=keep_token
                ),
                metadata=self._metadata(mh.mh_id),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "meeting %s: MH %s at %s did not register participant %s: %s",
                meeting_id,
                mh.mh_id,
                mh.grpc_endpoint,
                participant_id,
                describe_rpc_error(mh.grpc_endpoint, exc),
            )
            return None
        return MediaGrant(
            mh_id=mh.mh_id,
            role=mh.role.value,
            url=answer.media_handler_url,
            room=answer.room,
            token=answer.connection_token,
        )

    async def grants(
        self,
        meeting_id: str,
        participant_id: str,
        mhs: Sequence[MhTarget],
        *,
        keep_token: bool = False,
    ) -> list[MediaGrant]:
        """One grant per MH of `mhs` (in their order) that registered the participant.
        `keep_token` (a media move): an MH where it holds a live token answers that one."""
        targets = [m for m in mhs if m.grpc_endpoint]
        answers = await asyncio.gather(
            *(self._register(m, meeting_id, participant_id, keep_token) for m in targets)
        )
        return [a for a in answers if a is not None]

    async def move(
        self,
        meeting_id: str,
        previous: Sequence[MhTarget],
        mhs: Sequence[MhTarget],
        participant_ids: Sequence[str],
    ) -> dict[str, MediaUpdate] | None:
        """The meeting's MHs changed from `previous` to `mhs` (`darktower.mc.media_watch`: one
        went down; or a new assignment). None when the primary stayed the same; otherwise each
        participant is registered on `mhs` anew, all at once (keeping a live token it holds on
        an MH: a client that moved there by itself is not cut off), and gets a `media_update`
        with its new grants ("mh_down" when `mhs` only lost MHs, else "reassigned"). The MHs left
        out drop the meeting's room in the background (a dead one fails fast)."""
        if primary_of(previous) == primary_of(mhs):
            return None
        kept = {m.mh_id for m in mhs}
        dropped = [m for m in previous if m.mh_id not in kept]
        if dropped:
            task = asyncio.get_running_loop().create_task(self.end(meeting_id, dropped))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        reason = "mh_down" if kept <= {m.mh_id for m in previous} else "reassigned"
        grants = await asyncio.gather(
            *(self.grants(meeting_id, p, mhs, keep_token=True) for p in participant_ids)
        )
        return {
            p: MediaUpdate(media=g, reason=reason)
            for p, g in zip(participant_ids, grants, strict=True)
        }

    async def end(self, meeting_id: str, mhs: Sequence[MhTarget]) -> None:
        """Tell every MH of the meeting that it ended (failures are logged only)."""
        await self._end(meeting_id, "", mhs)

    async def leave(self, meeting_id: str, participant_id: str, mhs: Sequence[MhTarget]) -> None:
        """Tell every MH of the meeting that the participant left: its token is revoked, so a
        participant who left (or was removed) sends and receives no more media."""
        await self._end(meeting_id, participant_id, mhs)

    async def mute(
        self, meeting_id: str, participant_id: str, muted: bool, mhs: Sequence[MhTarget]
    ) -> None:
        """A host mute, enforced by every MH of the meeting: Janus stops forwarding the
        participant's audio (MuteParticipant); failures are logged only."""

        async def mute_one(mh: MhTarget) -> None:
            try:
                await self._stub(mh.grpc_endpoint).MuteParticipant(
                    pb.MuteMediaRequest(
                        meeting_id=meeting_id, participant_id=participant_id, muted=muted
                    ),
                    metadata=self._metadata(mh.mh_id),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "meeting %s: MH %s at %s did not apply a host mute of %s: %s",
                    meeting_id,
                    mh.mh_id,
                    mh.grpc_endpoint,
                    participant_id,
                    describe_rpc_error(mh.grpc_endpoint, exc),
                )

        await asyncio.gather(*(mute_one(m) for m in mhs if m.grpc_endpoint))

    async def _end(self, meeting_id: str, participant_id: str, mhs: Sequence[MhTarget]) -> None:
        async def end_one(mh: MhTarget) -> None:
            try:
                await self._stub(mh.grpc_endpoint).EndMeeting(
                    pb.EndMediaMeetingRequest(meeting_id=meeting_id, participant_id=participant_id),
                    metadata=self._metadata(mh.mh_id),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "meeting %s: MH %s at %s not told of an end (%s): %s",
                    meeting_id,
                    mh.mh_id,
                    mh.grpc_endpoint,
                    participant_id or "the meeting",
                    describe_rpc_error(mh.grpc_endpoint, exc),
                )

        await asyncio.gather(*(end_one(m) for m in mhs if m.grpc_endpoint))

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)
