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
The session joins with the `roster_delta` feature (batched roster frames, a paged join
answer); `events()` still reads one event per participant change (`roster.py`). The GC
exchange and the socket are in `gc.py`, the events and errors in `events.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Literal

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from darktower.client.events import (
    ClientError,
    Ended,
    Joined,
    JoinRefused,
    McUnreachable,
    Reconnecting,
    Redirected,
    SessionEvent,
)
from darktower.client.gc import GcAnswer, ask_gc, open_signaling
from darktower.client.roster import apply_delta, merge_pages
from darktower.signaling.protocol import (
    ROSTER_DELTA,
    ErrorCode,
    ErrorMsg,
    HostMute,
    Join,
    JoinAnswer,
    Leave,
    LeaveReason,
    MediaUpdate,
    Muted,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    Pong,
    ProtocolError,
    Redirect,
    RosterDelta,
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

    async def _ask_gc(self, *, unreachable_mc_id: str | None = None) -> GcAnswer:
        """The GC's answer; `unreachable_mc_id`: the MC it named last time, which refused or
        timed out our connection (the GC checks it and, if down, places the meeting anew)."""
        body: dict[str, str] = {"display_name": self.display_name}
        if self.user_id is not None:
            body["user_id"] = self.user_id
        if unreachable_mc_id is not None:
            body["unreachable_mc_id"] = unreachable_mc_id
        gc = await ask_gc(self._http, self.gc_url, self.meeting_id, body, self._access_token)
        self.user_id = gc.user_id
        return gc

    async def _connect(self, *, resume: bool) -> JoinAnswer:
        """One attempt: GC, socket, join frame, join answer. With `resume`, and a session to
        resume, the join carries the correlation id and binding token."""
        gc = await self._ask_gc()
        try:
            ws = await self._open(gc)
        except McUnreachable:
            # The MC the GC named does not take the connection (crashed?): ask again at once,
            # naming it. The GC checks it itself and, if it is down, places the meeting anew;
            # if it answers the GC, the same MC comes back and the usual backoff follows.
            gc = await self._ask_gc(unreachable_mc_id=gc.mc_id)
            ws = await self._open(gc)
        resuming = resume and self.correlation_id is not None and self.binding_token is not None
        join = Join(
            token=gc.join_token,
            meeting_id=self.meeting_id,
            features=[ROSTER_DELTA],
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
            if isinstance(first, JoinAnswer) and first.roster_pages:
                first = merge_pages(first, await self._pages(ws, first.roster_pages))
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

    async def _pages(self, ws: ClientConnection, count: int) -> list[RosterDelta]:
        """The `count` roster pages that follow a paged join answer (ProtocolError if not)."""
        pages = []
        for _ in range(count):
            page = parse_server(await asyncio.wait_for(ws.recv(), self._open_timeout))
            if not isinstance(page, RosterDelta):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"expected roster_delta: {page.type}")
            pages.append(page)
        return pages

    async def _open(self, gc: GcAnswer) -> ClientConnection:
        """The WebSocket to the MC the GC named (see `gc.open_signaling`)."""
        return await open_signaling(
            gc.signaling_url, open_timeout=self._open_timeout, ssl_context=self._ssl
        )

    async def _follow(self, redirect: Redirect) -> bool:
        """The meeting moved to another MC (its MC drains): resume there with the redirect's
        join token and binding token, without asking the GC; False if that did not work (the
        caller then reconnects through the GC)."""
        self._emit(Redirected(redirect.signaling_url, redirect.mc_id or "", redirect.reason))
        join = Join(
            token=redirect.token,
            meeting_id=self.meeting_id,
            features=[ROSTER_DELTA],
            correlation_id=redirect.correlation_id,
            binding_token=redirect.binding_token,
        )
        previous = self.participant_id
        url = redirect.signaling_url
        try:
            ws = await open_signaling(url, open_timeout=self._open_timeout, ssl_context=self._ssl)
        except JoinRefused as exc:
            log.info("following the redirect failed: %s", exc)
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
        if isinstance(message, RosterDelta):
            self.host_id = message.host_id
            for event in apply_delta(self.roster, message, self.participant_id):
                self._emit(event)
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
        elif isinstance(message, MediaUpdate):
            return None  # this client does no media (README "Media": the browser does)
        elif isinstance(message, Redirect):
            # Followed once the MC closes this socket (right after it).
            self._redirect = message
            return None
        if isinstance(message, Muted | ErrorMsg):
            self._emit(message)  # other types (later additions) are not session events
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
