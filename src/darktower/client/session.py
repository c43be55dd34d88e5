"""`ClientSession`: one participant in one meeting, from the join through the GC to leaving.

    join()  POST {gc}/v1/meetings/{id}/join {display_name, user_id?}  → join token, signaling URL
            open the WebSocket, send `join {token, meeting_id}`       → join_answer (or refused)
    then    frames from the MC update `roster` and come out of `events()`, in order

The session survives the two ways a meeting can slip away without the participant leaving:

* the socket drops (network, MC restart): it asks the GC again for the **same user id** (a
  fresh join token; the GC may answer another MC) and resumes with its correlation id and
  binding token, so it keeps its participant id (`Joined(kind="reconnected")`);
* the MC says the meeting **moved** (`participant_left` for itself, reason `moved`): the same,
  at once, through the GC, which answers the meeting's new MC;
* the MC **redirects** it (`redirect`: its MC drains and the meeting moved live to another
  MC): it opens the new MC's URL and resumes there with the redirect's join token and binding
  token, without asking the GC (`Redirected`, then `Joined(kind="reconnected")`); if that
  fails, it reconnects through the GC as above.

When the MC refuses the resumption (binding expired or replayed, session over, participant
unknown) the session joins afresh with the same user id. If the MC still has this user's
entry, disconnected (an outage longer than the binding token's life), it gives that seat back:
the same participant id, host role kept (`Joined(kind="reconnected")`, a new correlation id);
otherwise the session is a new participant (`Joined(kind="rejoined")`). Attempts back off
exponentially (`backoff_base`, doubling, `backoff_cap`) and stop after `max_attempts` in a row;
then the session ends (`Ended`). `leave()` sends `leave`, waits (bounded) for the MC to close
and ends the session with reason `voluntary`.

The WebSocket is opened without a proxy: signaling goes straight to the MC the GC named.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from darktower.common.tls_errors import tls_failure
from darktower.signaling.protocol import (
    MAX_SERVER_FRAME_BYTES,
    ErrorCode,
    ErrorMsg,
    HostMute,
    Join,
    JoinAnswer,
    Leave,
    LeaveReason,
    Muted,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    Pong,
    ProtocolError,
    Redirect,
    SelfMute,
    encode,
    parse_server,
)

__all__ = [
    "ClientError",
    "ClientSession",
    "Ended",
    "JoinRefused",
    "Joined",
    "Reconnecting",
    "Redirected",
    "SessionEvent",
]

log = logging.getLogger(__name__)

LEAVE_WAIT_SECONDS = 3.0
# How often a session pings its MC; each pong carries a fresh binding token (valid 30 s).
KEEPALIVE_SECONDS = 10.0
# MC refusals of a resumption that a fresh join (a new participant) can get past.
RESUME_REFUSED = frozenset(
    {ErrorCode.INVALID_BINDING, ErrorCode.SESSION_EXPIRED, ErrorCode.UNKNOWN_PARTICIPANT}
)
# MC refusals worth another attempt later (possibly on another MC).
RETRYABLE = frozenset({ErrorCode.MEETING_UNAVAILABLE})


class ClientError(Exception):
    """The session cannot go on; the message is fit for a terminal."""


class JoinRefused(ClientError):
    """The GC or the MC refused the join. `code`: the MC's error code, or `http_<status>`;
    `retryable`: another attempt later may succeed (no MC available, meeting unavailable)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.retryable = retryable


class _McUnreachable(JoinRefused):
    """The MC's WebSocket refused or timed out the connection: evidence for the GC."""


@dataclass(frozen=True, slots=True)
class Joined:
    """In the meeting: first join, reconnected (same participant id) or rejoined (a new
    participant: the old session could not be resumed)."""

    kind: Literal["joined", "reconnected", "rejoined"]
    answer: JoinAnswer
    mc_id: str
    signaling_url: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection is gone (`why`); attempt number `attempt` follows after `delay_s`."""

    why: str
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class Redirected:
    """The MC moved the meeting to another MC (`reason` "migration": it drains); the session
    follows to `signaling_url` by itself (a `Joined(kind="reconnected")` follows)."""

    signaling_url: str
    mc_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ended:
    """Out of the meeting for good: a LeaveReason value, or "failed" (`detail` says why)."""

    reason: str
    detail: str = ""


SessionEvent = (
    Joined
    | Reconnecting
    | Redirected
    | Ended
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | Muted
    | ErrorMsg
)


@dataclass(frozen=True, slots=True)
class _GcAnswer:
    mc_id: str
    user_id: str
    join_token: str
    signaling_url: str


class ClientSession:
    """A participant's session (see the module docstring). Use as an async context manager,
    or call `aclose()`; `events()` may be iterated by one consumer."""

    def __init__(
        self,
        gc_url: str,
        meeting_id: str,
        *,
        display_name: str,
        user_id: str | None = None,
        access_token: str | None = None,
        http: httpx.AsyncClient | None = None,
        max_attempts: int = 8,
        backoff_base: float = 0.25,
        backoff_cap: float = 5.0,
        open_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` verifies an https:// GC and wss:// MCs (default: the system's roots);
        it is not used for a given `http` client. `access_token` (an application's, for this
        meeting) is sent with every join (`Authorization: Bearer`); without one the session
        joins as a guest, which the GC allows only with GC_ALLOW_GUESTS=true."""
        self.gc_url = gc_url.rstrip("/")
        self._ssl = ssl_context
        self.meeting_id = meeting_id
        self.display_name = display_name
        self.user_id = user_id
        self._access_token = access_token
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=40.0, trust_env=False, verify=ssl_context or True
        )
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._open_timeout = open_timeout
        self.roster: dict[str, Participant] = {}
        self.participant_id: str | None = None
        self.correlation_id: str | None = None
        self.binding_token: str | None = None
        self.host_id: str | None = None
        self.mc_id: str | None = None
        self.signaling_url: str | None = None
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._leaving = False
        self.ended: Ended | None = None
        self._redirect: Redirect | None = None  # the MC's redirect, until the socket closes

    async def __aenter__(self) -> ClientSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def connection(self) -> ClientConnection | None:
        """The current WebSocket, if connected (tests drop it to exercise reconnection)."""
        return self._ws

    # -- public API ------------------------------------------------------------------------

    async def join(self) -> JoinAnswer:
        """Join through the GC and the MC; JoinRefused / ClientError if that fails."""
        if self._reader is not None:
            raise RuntimeError("join() once per session")
        answer = await self._connect(resume=False)
        self._emit(Joined("joined", answer, self.mc_id or "", self.signaling_url or ""))
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._run(), name="client-session")
        self._keepalive = loop.create_task(self._ping_forever(), name="client-keepalive")
        return answer

    async def _ping_forever(self) -> None:
        """Ping every KEEPALIVE_SECONDS; each pong brings a fresh binding token, so the session
        stays resumable however long it lasts."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            if self._ws is not None:
                with contextlib.suppress(ConnectionClosed, ClientError):
                    await self._send(Ping())

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event in order, until (and including) `Ended`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Ended):
                return

    async def set_muted(self, muted: bool) -> None:
        await self._send(SelfMute(muted=muted))

    async def host_mute(self, participant_id: str, muted: bool) -> None:
        """Only the meeting's host may; others get an `ErrorMsg` (not_host) event."""
        await self._send(HostMute(participant_id=participant_id, muted=muted))

    async def ping(self, nonce: str | None = None) -> None:
        await self._send(Ping(nonce=nonce))

    async def leave(self) -> None:
        """Leave voluntarily: send `leave`, wait (bounded) for the MC to close, end."""
        if self.ended is not None:
            return
        self._leaving = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(Leave()))
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), LEAVE_WAIT_SECONDS)
        await self._stop()
        self._end(Ended(LeaveReason.VOLUNTARY.value))

    async def aclose(self) -> None:
        """Stop at once (no `leave`: the MC keeps the participant for its grace period)."""
        await self._stop()
        if self._own_http:
            await self._http.aclose()
        self._end(Ended("failed", "closed"))

    # -- connecting ------------------------------------------------------------------------

    async def _ask_gc(self, *, unreachable_mc_id: str | None = None) -> _GcAnswer:
        """The GC's answer; `unreachable_mc_id`: the MC it named last time, which refused or
        timed out our connection (the GC checks it and, if down, places the meeting anew)."""
        url = f"{self.gc_url}/v1/meetings/{quote(self.meeting_id, safe='')}/join"
        body: dict[str, str] = {"display_name": self.display_name}
        if self.user_id is not None:
            body["user_id"] = self.user_id
        if unreachable_mc_id is not None:
            body["unreachable_mc_id"] = unreachable_mc_id
        try:
            headers = (
                {"Authorization": f"Bearer {self._access_token}"} if self._access_token else {}
            )
            response = await self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            tls = tls_failure(exc)
            why = f": TLS handshake failed ({tls})" if tls else ""
            raise JoinRefused(
                "gc_unreachable", f"cannot reach the GC at {self.gc_url}{why}", retryable=True
            ) from exc
        data: Any = None
        with contextlib.suppress(ValueError):
            data = response.json()
        if response.is_error:
            message = data.get("message") if isinstance(data, dict) else None
            raise JoinRefused(
                f"http_{response.status_code}",
                f"the GC refused the join: {message or response.reason_phrase}",
                retryable=response.status_code >= 500,
            )
        if not isinstance(data, dict) or not isinstance(data.get("join_token"), str):
            raise JoinRefused("bad_answer", "the GC's join answer has no join token")
        if not data.get("signaling_url"):
            raise JoinRefused(
                "no_signaling", f"MC {data.get('mc_id')} registered no client endpoint"
            )
        self.user_id = str(data["user_id"])
        return _GcAnswer(
            mc_id=str(data["mc_id"]),
            user_id=self.user_id,
            join_token=data["join_token"],
            signaling_url=str(data["signaling_url"]),
        )

    async def _connect(self, *, resume: bool) -> JoinAnswer:
        """One attempt: GC, socket, join frame, join answer. With `resume`, and a session to
        resume, the join carries the correlation id and binding token."""
        gc = await self._ask_gc()
        try:
            ws = await self._open(gc)
        except _McUnreachable:
            # The MC the GC named does not take the connection (crashed?): ask again at once,
            # naming it. The GC checks it itself and, if it is down, places the meeting anew;
            # if it answers the GC, the same MC comes back and the usual backoff follows.
            gc = await self._ask_gc(unreachable_mc_id=gc.mc_id)
            ws = await self._open(gc)
        resuming = resume and self.correlation_id is not None and self.binding_token is not None
        join = Join(
            token=gc.join_token,
            meeting_id=self.meeting_id,
            correlation_id=self.correlation_id if resuming else None,
            binding_token=self.binding_token if resuming else None,
        )
        return await self._join_over(ws, join, gc.mc_id, gc.signaling_url)

    async def _join_over(
        self, ws: ClientConnection, join: Join, mc_id: str, signaling_url: str
    ) -> JoinAnswer:
        """Send `join` on the fresh socket `ws` to MC `mc_id`; the answer, or JoinRefused."""
        resuming = join.correlation_id is not None
        try:
            await ws.send(encode(join))
            first = parse_server(await asyncio.wait_for(ws.recv(), self._open_timeout))
        except (ConnectionClosed, TimeoutError, ProtocolError) as exc:
            await ws.close()
            raise JoinRefused(
                "join_failed", "the MC closed or did not answer the join", retryable=True
            ) from exc
        if isinstance(first, ErrorMsg):
            await ws.close()
            raise JoinRefused(
                first.code.value,
                f"the MC refused the join: {first.message}",
                retryable=first.code in RETRYABLE or (resuming and first.code in RESUME_REFUSED),
            )
        if not isinstance(first, JoinAnswer):
            await ws.close()
            raise JoinRefused("bad_answer", f"expected join_answer, got {first.type}")
        self._ws = ws
        self.mc_id = mc_id
        self.signaling_url = signaling_url
        self.participant_id = first.participant_id
        self.correlation_id = first.correlation_id
        self.binding_token = first.binding_token
        self.host_id = first.host_id
        self.roster = {p.participant_id: p for p in first.roster}
        return first

    async def _open(self, gc: _GcAnswer) -> ClientConnection:
        """The WebSocket to the MC the GC named; `_McUnreachable` if the connection is refused
        or times out, JoinRefused `mc_unreachable` for a TLS handshake that fails."""
        try:
            return await connect(
                gc.signaling_url,
                open_timeout=self._open_timeout,
                max_size=MAX_SERVER_FRAME_BYTES,
                compression=None,
                proxy=None,
                ssl=self._ssl if gc.signaling_url.startswith("wss://") else None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            tls = tls_failure(exc)
            if tls:
                raise JoinRefused(
                    "mc_unreachable",
                    f"cannot open {gc.signaling_url}: TLS handshake failed ({tls})",
                    retryable=True,
                ) from exc
            # Refused or timed out: nobody there. An HTTP answer to the upgrade is somebody.
            unreachable = isinstance(exc, OSError | TimeoutError)
            raise (_McUnreachable if unreachable else JoinRefused)(
                "mc_unreachable", f"cannot open {gc.signaling_url}", retryable=True
            ) from exc

    async def _follow(self, redirect: Redirect) -> bool:
        """The meeting moved to another MC (its MC drains): resume there with the redirect's
        join token and binding token, without asking the GC; False if that did not work (the
        caller then reconnects through the GC)."""
        self._emit(Redirected(redirect.signaling_url, redirect.mc_id or "", redirect.reason))
        join = Join(
            token=redirect.token,
            meeting_id=self.meeting_id,
            correlation_id=redirect.correlation_id,
            binding_token=redirect.binding_token,
        )
        previous = self.participant_id
        url = redirect.signaling_url
        try:
            ws = await connect(
                url,
                open_timeout=self._open_timeout,
                max_size=MAX_SERVER_FRAME_BYTES,
                compression=None,
                proxy=None,
                ssl=self._ssl if url.startswith("wss://") else None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            log.info("following the redirect failed: cannot open %s (%s)", url, exc)
            return False
        try:
            answer = await self._join_over(ws, join, redirect.mc_id or "", url)
        except JoinRefused as exc:
            log.info("following the redirect failed: %s", exc)
            return False
        kind: Literal["reconnected", "rejoined"] = (
            "reconnected" if answer.participant_id == previous else "rejoined"
        )
        self._emit(Joined(kind, answer, self.mc_id or "", self.signaling_url or ""))
        return True

    async def _reconnect(self, why: str, *, immediately: bool = False) -> bool:
        """Get back in (see the module docstring); False when every attempt failed."""
        resume = True
        for attempt in range(1, self._max_attempts + 1):
            if attempt == 1 and immediately:
                delay = 0.0
            else:
                delay = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
            self._emit(Reconnecting(why, attempt, delay))
            await asyncio.sleep(delay)
            previous = self.participant_id
            try:
                answer = await self._connect(resume=resume)
            except JoinRefused as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                if exc.code in {c.value for c in RESUME_REFUSED}:
                    resume = False  # the old session is gone: join as a new participant
                elif not exc.retryable:
                    self._end(Ended("failed", str(exc)))
                    return False
                why = str(exc)
                continue
            kind: Literal["reconnected", "rejoined"] = (
                "reconnected" if answer.participant_id == previous else "rejoined"
            )
            self._emit(Joined(kind, answer, self.mc_id or "", self.signaling_url or ""))
            return True
        self._end(Ended("failed", f"gave up after {self._max_attempts} attempts: {why}"))
        return False

    # -- the session loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            left: LeaveReason | None = None
            self._redirect = None
            try:
                async for frame in ws:
                    left = self._handle(frame) or left
            except ConnectionClosed:
                pass
            self._ws = None
            if self._leaving or self.ended is not None:
                return
            redirect, self._redirect = self._redirect, None
            if redirect is not None and await self._follow(redirect):
                continue
            if redirect is not None:
                if not await self._reconnect("the meeting moved", immediately=True):
                    return
            elif left is None:
                why = "the connection dropped"
                if not await self._reconnect(why):
                    return
            elif left == LeaveReason.MOVED:
                if not await self._reconnect("the meeting moved", immediately=True):
                    return
            else:
                self._end(Ended(left.value))
                return

    def _handle(self, frame: str | bytes) -> LeaveReason | None:
        """Apply one frame; the reason when it says this participant is out."""
        try:
            message = parse_server(frame)
        except ProtocolError as exc:
            log.warning("ignoring a frame from the MC: %s", exc.message)
            return None
        if isinstance(message, ParticipantJoined | ParticipantUpdated):
            self.roster[message.participant.participant_id] = message.participant
            if isinstance(message, ParticipantJoined) and message.host_id is not None:
                self.host_id = message.host_id
        elif isinstance(message, ParticipantLeft):
            if message.host_id is not None:
                self.host_id = message.host_id
            if message.participant_id == self.participant_id:
                # Said before the MC hangs up; the loop acts on it once the socket is closed.
                self._emit(message)
                return message.reason
            self.roster.pop(message.participant_id, None)
        elif isinstance(message, Muted):
            target = self.roster.get(message.participant_id)
            if target is not None:
                self.roster[target.participant_id] = target.model_copy(
                    update={"host_muted": message.muted}
                )
        elif isinstance(message, Pong):
            if message.binding_token is not None:
                self.binding_token = message.binding_token
            return None
        elif isinstance(message, JoinAnswer):
            return None
        elif isinstance(message, Redirect):
            # Followed once the MC closes this socket (right after it).
            self._redirect = message
            return None
        self._emit(message)
        return None

    # -- helpers ---------------------------------------------------------------------------

    async def _send(self, message: SelfMute | HostMute | Ping) -> None:
        ws = self._ws
        if ws is None:
            raise ClientError("not connected")
        try:
            await ws.send(encode(message))
        except ConnectionClosed:
            raise ClientError("not connected") from None

    def _emit(self, event: SessionEvent) -> None:
        self._events.put_nowait(event)

    def _end(self, event: Ended) -> None:
        if self.ended is None:
            self.ended = event
            self._emit(event)

    async def _stop(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
