"""Client signaling over WebSocket (protocol v1, `darktower.signaling.protocol`).

The edge between a client's socket and its meeting's actors; it decides nothing itself:

1. A client opens `ws(s)://<client endpoint>/v1/signaling` (any other path: HTTP 404) and has
   `JOIN_TIMEOUT_SECONDS` to send `join`. Frames before it are answered `not_joined`,
   unparseable ones `bad_message` (the socket stays open); a frame of another protocol version
   is answered `unsupported_version` and closes it.
2. The join token is checked against the trusted GC keys (`invalid_join_token`,
   `wrong_meeting` when the join names another meeting); the token's meeting must be hosted
   here (`meeting_unavailable`). The MeetingActor then admits the client or refuses it
   (capacity, binding token, expired session). Join refusals are fatal: error, then close
   (code 1008), counted in `mc_join_refusals_total{reason}`.
3. Once admitted, the client's frames go to the MeetingActor as `ClientFrame`s (a `ping` is
   answered at once by `MeetingActor.pong`, outside its mailbox), and every
   frame to the client goes through its ConnectionActor. When the socket closes — for whatever
   reason, `leave` included — the meeting gets `ConnectionLost`; without a `leave` before it,
   that starts the participant's grace period.

Limits (`ClientLimits`, from the `MC_*` settings), so that no client can take the MC down:

* at most `max_connections` open sockets; one more is accepted and closed at once with 1013
  (try again later) — the client's GC join may place it elsewhere;
* a join token joins once (its `jti` spent in Redis, `darktower.mc.join_once`): shown again it
  is refused `token_reused`;
* an admitted client's frames pass a per-connection token bucket (`ratelimit.FrameLimiter`):
  a frame over the rate is dropped and the client told `rate_limited` (once per run of drops);
  a client that keeps on is closed with 1008, and its connection dropped if it has not
  finished the closing handshake within `CUT_CLOSE_TIMEOUT_SECONDS`: the MC stops reading a
  flooder at once instead of reading (and discarding) its backlog for the usual close timeout;
* at most `send_queue` frames wait for a client; a client that does not read is cut off (see
  `connection.py`) and the meeting carries on without waiting for it.

Frames are at most `protocol.MAX_FRAME_BYTES` (a larger one closes the socket, code 1009).
Compression is off: signaling frames are small JSON and per-connection deflate state would
cost more memory than it saves bandwidth.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from darktower.actors import ActorStopped
from darktower.auth.join_tokens import (
    InvalidJoinToken,
    JoinClaims,
    JoinTokenVerifier,
    WrongMeeting,
)
from darktower.auth.tokens import DEFAULT_LEEWAY_SECONDS
from darktower.fencing import StoreUnavailable
from darktower.mc.connection import DEFAULT_SEND_QUEUE, Close, ConnectionActor, Deliver
from darktower.mc.controller import MeetingControllerActor
from darktower.mc.join_once import JoinTokenLedger
from darktower.mc.meeting import ClientFrame, ConnectionLost, JoinRefusal, JoinRequest, MeetingActor
from darktower.mc.metrics import (
    JOIN_REFUSALS,
    SIGNALING_CONNECTIONS,
    SIGNALING_CUTOFFS,
    SIGNALING_MESSAGES,
    SIGNALING_RATE_LIMITED,
)
from darktower.mc.ratelimit import FrameLimiter, Verdict
from darktower.runtime.serving import parse_bind
from darktower.signaling.protocol import (
    MAX_FRAME_BYTES,
    ROSTER_DELTA,
    ErrorCode,
    ErrorMsg,
    HostMute,
    Join,
    Leave,
    Ping,
    ProtocolError,
    SelfMute,
    encode,
    parse_client,
)

__all__ = ["JOIN_TIMEOUT_SECONDS", "SIGNALING_PATH", "ClientLimits", "SignalingServer"]

log = logging.getLogger(__name__)

SIGNALING_PATH = "/v1/signaling"
JOIN_TIMEOUT_SECONDS = 10.0
# The kernel's send buffer of a client socket (SO_SNDBUF). Left to autotuning it grows to
# megabytes on a connection that does not read, which would hold thousands of frames before
# MC_CLIENT_SEND_QUEUE could notice the client; signaling needs little in flight.
SOCKET_SEND_BUFFER_BYTES = 64 * 1024
# Longest wait for a client's closing handshake before the TCP connection is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0
# The same for a client cut off for flooding: its frames queued behind the close would all be
# read and discarded meanwhile, and a flooder that reads nothing never answers the close.
CUT_CLOSE_TIMEOUT_SECONDS = 0.25

_sequence = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The signaling edge's limits (MC_MAX_CONNECTIONS, MC_CLIENT_MESSAGE_RATE,
    MC_CLIENT_MESSAGE_BURST, MC_CLIENT_SEND_QUEUE)."""

    max_connections: int = 12000
    message_rate: float = 20.0
    message_burst: int = 40
    send_queue: int = DEFAULT_SEND_QUEUE


class _Refused(Exception):
    """A fatal join failure: what the client is told and the metric label."""

    def __init__(self, code: ErrorCode, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.value


def _parse(frame: str | bytes) -> Join | SelfMute | HostMute | Leave | Ping:
    """A client frame, counted by type; ProtocolError for anything else."""
    try:
        message = parse_client(frame)
    except ProtocolError:
        SIGNALING_MESSAGES.labels("invalid").inc()
        raise
    SIGNALING_MESSAGES.labels(message.type).inc()
    return message


def _error(code: ErrorCode, message: str) -> str:
    return encode(ErrorMsg(code=code, message=message))


async def _send(ws: ServerConnection, frame: str) -> None:
    """The ConnectionActor's outbox: a closed socket just drops the frame."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(frame)


async def _cut(ws: ServerConnection, error: str) -> None:
    """Close a flooding client (1008 `rate_limited`) and drop its connection if the closing
    handshake is not over within `CUT_CLOSE_TIMEOUT_SECONDS` (see the module docstring)."""
    ws.close_timeout = CUT_CLOSE_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout(CUT_CLOSE_TIMEOUT_SECONDS):
            await _send(ws, error)
            await ws.close(CloseCode.POLICY_VIOLATION, ErrorCode.RATE_LIMITED.value)
    except TimeoutError:
        ws.transport.abort()  # a client that does not read: the close frame cannot even go


class SignalingServer:
    def __init__(
        self,
        bind: str,
        *,
        controller: MeetingControllerActor,
        verifier: JoinTokenVerifier,
        join_timeout: float = JOIN_TIMEOUT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        limits: ClientLimits | None = None,
        spent_tokens: JoinTokenLedger | None = None,
    ) -> None:
        """`ssl_context`: serve WSS (TLS) with it; plain WS without. `spent_tokens`: where
        used join tokens are recorded (None: join tokens are not single-use)."""
        self._bind = bind
        self._ssl = ssl_context
        self._controller = controller
        self._verifier = verifier
        self._join_timeout = join_timeout
        self._limits = limits or ClientLimits()
        self._spent_tokens = spent_tokens
        self._open = 0  # sockets whose handler runs (the connection cap counts these)
        self._server: Server | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen on the bind address (OSError when it cannot)."""
        host, port = parse_bind(self._bind)
        self._server = await serve(
            self._session,
            host,
            port,
            process_request=self._route,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            logger=log,
            ssl=self._ssl,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self, timeout: float) -> None:
        """Refuse new sockets, close the open ones (1001 going away) and wait for their
        handlers, at most `timeout` seconds."""
        if self._server is None:
            return
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), max(0.1, timeout))
        except TimeoutError:
            log.warning("signaling server: connections still open at the stop deadline")

    def _route(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != SIGNALING_PATH:
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    # -- one client ------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        if self._open >= self._limits.max_connections:
            SIGNALING_CUTOFFS.labels("connection_cap").inc()
            await ws.close(CloseCode.TRY_AGAIN_LATER, "connection_cap")
            return
        self._open += 1
        SIGNALING_CONNECTIONS.inc()
        # The handshake is over: the headers of its request and response (~3 KiB a socket)
        # are not read again; a large meeting holds a thousand of them.
        if ws.request is not None:
            ws.request = Request(ws.request.path, Headers())
        ws.response = None
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER_BYTES)
        # Set from the moment the meeting may have admitted the connection: from then on the
        # meeting hears when the socket is gone, whatever ends this handler.
        admitted_by: MeetingActor | None = None
        connection = ConnectionActor(
            f"ws-{next(_sequence)}",
            "",
            lambda frame: _send(ws, frame),
            hangup=ws.close,
            cut=ws.transport.abort,
            max_queue=self._limits.send_queue,
        )
        try:
            join = await self._await_join(ws)
            if join is None:
                return
            try:
                request, meeting = self._check(join, connection)
                await self._spend(request.claims)
                admitted_by = meeting
                await self._admit(meeting, request)
            except _Refused as refusal:
                admitted_by = None
                JOIN_REFUSALS.labels(refusal.reason).inc()
                await _send(ws, _error(refusal.code, refusal.message))
                await ws.close(CloseCode.POLICY_VIOLATION, refusal.code.value)
                return
            await self._relay(ws, meeting, connection)
        except ConnectionClosed:
            pass
        finally:
            self._open -= 1
            SIGNALING_CONNECTIONS.dec()
            if admitted_by is not None:
                with contextlib.suppress(ActorStopped):
                    admitted_by.send(ConnectionLost(connection))

    async def _await_join(self, ws: ServerConnection) -> Join | None:
        """The client's join frame; None when the socket closed or timed out without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._join_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    frame = await ws.recv()
            except TimeoutError:
                JOIN_REFUSALS.labels("join_timeout").inc()
                await _send(ws, _error(ErrorCode.NOT_JOINED, "no join in time"))
                await ws.close(CloseCode.POLICY_VIOLATION, ErrorCode.NOT_JOINED.value)
                return None
            try:
                message = _parse(frame)
            except ProtocolError as exc:
                await _send(ws, _error(exc.code, exc.message))
                if exc.code is ErrorCode.UNSUPPORTED_VERSION:
                    await ws.close(CloseCode.PROTOCOL_ERROR, exc.code.value)
                    return None
                continue
            if isinstance(message, Join):
                return message
            await _send(ws, _error(ErrorCode.NOT_JOINED, "join first"))

    def _check(self, join: Join, connection: ConnectionActor) -> tuple[JoinRequest, MeetingActor]:
        """The verified join and its meeting, hosted here; _Refused otherwise."""
        if (join.correlation_id is None) != (join.binding_token is None):
            raise _Refused(
                ErrorCode.BAD_MESSAGE, "correlation_id and binding_token go together", "bad_join"
            )
        try:
            claims = self._verifier.verify(join.token, meeting_id=join.meeting_id)
        except WrongMeeting:
            raise _Refused(
                ErrorCode.WRONG_MEETING, "the join token is for another meeting"
            ) from None
        except InvalidJoinToken:
            raise _Refused(ErrorCode.INVALID_JOIN_TOKEN, "invalid join token") from None
        # Unknown feature names are ignored (a later client may name more than this MC knows).
        connection.roster_deltas = ROSTER_DELTA in join.features
        meeting = self._controller.meetings.get(claims.meeting_id)
        if meeting is None or meeting.lost:
            raise _Refused(
                ErrorCode.MEETING_UNAVAILABLE, "the meeting is not hosted here", "not_hosted"
            )
        return JoinRequest(claims, connection, join.correlation_id, join.binding_token), meeting

    async def _spend(self, claims: JoinClaims) -> None:
        """Spend the join token (single use); _Refused when it was used before or the ledger
        cannot say (a token is never accepted twice, even while Redis is away)."""
        if self._spent_tokens is None:
            return
        remaining = claims.expires_at - int(time.time()) + DEFAULT_LEEWAY_SECONDS
        try:
            fresh = await self._spent_tokens.spend(claims.meeting_id, claims.token_id, remaining)
        except StoreUnavailable:
            raise _Refused(
                ErrorCode.MEETING_UNAVAILABLE,
                "the meeting state is unavailable, try again",
                "store",
            ) from None
        if not fresh:
            raise _Refused(ErrorCode.TOKEN_REUSED, "this join token was used already")

    async def _admit(self, meeting: MeetingActor, request: JoinRequest) -> None:
        """Have the meeting admit the connection; _Refused when it does not."""
        try:
            outcome = await meeting.ask(request)
        except ActorStopped:
            raise _Refused(
                ErrorCode.MEETING_UNAVAILABLE, "the meeting is not hosted here", "not_hosted"
            ) from None
        if isinstance(outcome, JoinRefusal):
            raise _Refused(outcome.code, outcome.message, outcome.reason)

    async def _relay(
        self, ws: ServerConnection, meeting: MeetingActor, connection: ConnectionActor
    ) -> None:
        """Client frames to the meeting until the socket closes (or the client floods)."""
        closing = False
        limits = self._limits
        clock = asyncio.get_running_loop().time
        limiter = FrameLimiter(limits.message_rate, limits.message_burst, clock())
        told = False  # the client was told `rate_limited` since its last accepted frame
        async for frame in ws:
            if closing:
                continue  # a fatal error was sent; the connection hangs up after it
            verdict = limiter.check(clock())
            if verdict is not Verdict.ALLOW:
                SIGNALING_RATE_LIMITED.inc()
                if verdict is Verdict.CLOSE:
                    SIGNALING_CUTOFFS.labels("rate_limited").inc()
                    await _cut(ws, _error(ErrorCode.RATE_LIMITED, "too many messages"))
                    return
                if not told:
                    told = True
                    self._tell(connection, Deliver(_error(ErrorCode.RATE_LIMITED, "slow down")))
                continue
            told = False
            try:
                message = _parse(frame)
            except ProtocolError as exc:
                self._tell(connection, Deliver(_error(exc.code, exc.message)))
                if exc.code is ErrorCode.UNSUPPORTED_VERSION:
                    closing = True
                    self._tell(connection, Close(None))
                continue
            if isinstance(message, Join):
                self._tell(connection, Deliver(_error(ErrorCode.BAD_MESSAGE, "already joined")))
                continue
            if isinstance(message, Ping):  # answered at once, not queued behind joins
                meeting.pong(connection, message.nonce)
                continue
            try:
                meeting.send(ClientFrame(connection, message))
            except ActorStopped:
                return

    @staticmethod
    def _tell(connection: ConnectionActor, message: Deliver | Close) -> None:
        with contextlib.suppress(ActorStopped):
            connection.send(message)
