"""One VideoRoom per meeting, one Janus token per registered participant.

`MediaRooms.register(meeting, participant)` makes sure the meeting's room exists on this Janus
(created on first use: private, so `list` does not show it to clients; a random 52-bit number,
so it is not guessed; with a room secret nobody but the MH holds) and issues a fresh token: a
random 256-bit string, added both to Janus's stored tokens (`token_auth`: without one, a client
cannot even open a session; limited to the VideoRoom plugin) and to that room's `allowed` list
(without it in the list, a session cannot join the room). A token of one meeting therefore opens
a session but never enters another meeting's room. A token is short-lived until used: one that
no Janus handle carries `token_claim_seconds` after it was issued (a grant never used, e.g. a
backup's, or one leaked from a join answer) is revoked by the sweep; a used one lives as long
as the registration. Registering again replaces the participant's token (the old one is
revoked); `end` revokes a participant's token, or destroys the meeting's room and revokes all
of its tokens.

Host mute (`mute`): Janus stops forwarding the participant's audio. The MH finds the VideoRoom
publisher handles attached with the participant's token (the admin API's `handle_info` names a
handle's token, whatever display name or feed id the client chose) and sends `moderate` with
`mute` for each of their audio streams: the packets still reach Janus, no subscriber gets them,
and the client cannot undo it. The mute sticks: `sweep` (the MH runs it every second)
moderates streams the participant publishes later (a republish, a second handle, a new token).

Janus forgets everything when it restarts: `forget_all` drops the bookkeeping then, and the MC
registers participants again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id
from darktower.mh.errors import InvalidMhRequest, MediaUnavailable, MhAtCapacity
from darktower.mh.janus_admin import JanusAdmin, JanusError, JanusUnavailable

__all__ = ["MediaRooms", "Registration", "RoomLimits"]

log = logging.getLogger(__name__)

# JavaScript numbers are exact up to 2**53: the browser handles room numbers as numbers.
_ROOM_BITS = 52


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_rooms: int = 10_000
    max_participants_per_room: int = 1000
    publishers_per_room: int = 100
    # A token no Janus handle carries this long after its issue is revoked (see the docstring).
    token_claim_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Registration:
    token: str
    room: int

    def __repr__(self) -> str:  # the token admits into a room: never in a log
        return f"Registration(room={self.room}, token=**********)"


@dataclass(slots=True)
class _Room:
    number: int
    secret: str
    tokens: dict[str, str] = field(default_factory=dict)  # participant id → token
    # Host-muted participants → the (handle, mid) audio streams moderated for them → the feed
    # each belongs to (what an unmute lifts, without listing Janus's handles again).
    muted: dict[str, dict[tuple[int, str], int]] = field(default_factory=dict)
    # Tokens no handle has carried yet → when they are revoked if none does by then.
    unclaimed: dict[str, float] = field(default_factory=dict)
    # Tokens the sweep revoked (still the participant's in `tokens` until it registers again).
    dead: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Handle:
    """A Janus handle and the token it was attached with; for a VideoRoom publisher, its room,
    feed and audio stream mids."""

    handle: int
    token: str
    publisher: bool = False
    room: int = 0
    feed: int = 0
    audio_mids: tuple[str, ...] = ()


def _checked(meeting_id: str, participant_id: str | None) -> None:
    try:
        validate_id(meeting_id, "meeting_id")
        if participant_id is not None:
            validate_id(participant_id, "participant_id")
    except InvalidField as exc:
        raise InvalidMhRequest(exc.field, exc.reason) from exc


class MediaRooms:
    def __init__(
        self,
        admin: JanusAdmin,
        limits: RoomLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self.limits = limits or RoomLimits()
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def meetings(self) -> int:
        return len(self._rooms)

    def room_of(self, meeting_id: str) -> int | None:
        room = self._rooms.get(meeting_id)
        return room.number if room else None

    def _lock(self, meeting_id: str) -> asyncio.Lock:
        lock = self._locks.get(meeting_id)
        if lock is None:
            lock = self._locks[meeting_id] = asyncio.Lock()
        return lock

    async def register(
        self, meeting_id: str, participant_id: str, *, keep_token: bool = False
    ) -> Registration:
        """A fresh token for the participant (the old one revoked); with `keep_token` (a media
        move), the live token it holds already, when it has one."""
        _checked(meeting_id, participant_id)
        async with self._lock(meeting_id):
            try:
                return await self._register(meeting_id, participant_id, keep_token)
            except (JanusError, JanusUnavailable) as exc:
                raise MediaUnavailable(str(exc)) from exc
            finally:
                if meeting_id not in self._rooms:
                    self._locks.pop(meeting_id, None)

    async def _register(
        self, meeting_id: str, participant_id: str, keep_token: bool
    ) -> Registration:
        room = self._rooms.get(meeting_id)
        if room is None:
            if len(self._rooms) >= self.limits.max_rooms:
                raise MhAtCapacity(f"this MH holds {self.limits.max_rooms} rooms")
            room = await self._create_room()
            self._rooms[meeting_id] = room
            log.info("room %d created for meeting %s", room.number, meeting_id)
        elif (
            participant_id not in room.tokens
            and len(room.tokens) >= self.limits.max_participants_per_room
        ):
            raise MhAtCapacity(f"room of meeting {meeting_id} is full")
        held = room.tokens.get(participant_id)
        if keep_token and held is not None and held not in room.dead:
            return Registration(token=held, room=room.number)
        token = secrets.token_urlsafe(32)
        await self._admin.add_token(token)
        try:
            await self._allow(room, [token], "add")
        except (JanusError, JanusUnavailable):
            await self._admin.remove_token(token)
            raise
        old = room.tokens.get(participant_id)
        room.tokens[participant_id] = token
        room.unclaimed[token] = self._clock() + self.limits.token_claim_seconds
        if old in room.dead:  # revoked by the sweep already
            room.dead.discard(old)
        elif old is not None:
            await self._revoke(room, old)
        return Registration(token=token, room=room.number)

    async def _create_room(self) -> _Room:
        limits = self.limits
        for _ in range(5):
            number = secrets.randbits(_ROOM_BITS) or 1
            room = _Room(number=number, secret=secrets.token_urlsafe(24))
            try:
                await self._admin.room_request(
                    {
                        "request": "create",
                        "room": number,
                        "is_private": True,
                        "secret": room.secret,
                        "allowed": [],
                        "publishers": limits.publishers_per_room,
                        "audiocodec": "opus",
                        "videocodec": "vp8",
                        "notify_joining": True,
                    }
                )
            except JanusError as exc:
                if exc.code == 427:  # JANUS_VIDEOROOM_ERROR_ROOM_EXISTS: draw again
                    continue
                raise
            return room
        raise MediaUnavailable("could not draw a free room number")

    async def _allow(self, room: _Room, tokens: list[str], action: str) -> None:
        await self._admin.room_request(
            {
                "request": "allowed",
                "room": room.number,
                "secret": room.secret,
                "action": action,
                "allowed": tokens,
            }
        )

    async def _revoke(self, room: _Room, token: str) -> None:
        room.unclaimed.pop(token, None)
        try:
            await self._allow(room, [token], "remove")
        except JanusError as exc:
            log.warning("room %d: cannot drop a token from the allowed list: %s", room.number, exc)
        await self._admin.remove_token(token)

    async def end(self, meeting_id: str, participant_id: str = "") -> bool:
        """Revoke one participant's token, or (no participant) destroy the meeting's room and
        revoke every token of it. False when there was nothing to end."""
        _checked(meeting_id, participant_id or None)
        async with self._lock(meeting_id):
            try:
                return await self._end(meeting_id, participant_id)
            except (JanusError, JanusUnavailable) as exc:
                raise MediaUnavailable(str(exc)) from exc
            finally:
                if meeting_id not in self._rooms:
                    self._locks.pop(meeting_id, None)

    async def _end(self, meeting_id: str, participant_id: str) -> bool:
        room = self._rooms.get(meeting_id)
        if room is None:
            return False
        if participant_id:
            token = room.tokens.pop(participant_id, None)
            room.muted.pop(participant_id, None)
            if token is None:
                return False
            if token in room.dead:
                room.dead.discard(token)
            else:
                await self._revoke(room, token)
            return True
        del self._rooms[meeting_id]
        try:
            await self._admin.room_request(
                {"request": "destroy", "room": room.number, "secret": room.secret}
            )
        except JanusError as exc:
            if exc.code != 426:  # JANUS_VIDEOROOM_ERROR_NO_SUCH_ROOM: gone already
                raise
        for token in room.tokens.values():
            if token not in room.dead:
                await self._admin.remove_token(token)
        log.info("room %d of meeting %s destroyed", room.number, meeting_id)
        return True

    async def mute(self, meeting_id: str, participant_id: str, muted: bool) -> int:
        """Host mute (or unmute) of a participant; how many audio streams were moderated now
        (0 too when it publishes nothing yet: the mute applies once it does)."""
        _checked(meeting_id, participant_id)
        async with self._lock(meeting_id):
            try:
                room = self._rooms.get(meeting_id)
                if room is None or participant_id not in room.tokens:
                    return 0
                if not muted:
                    done = room.muted.pop(participant_id, None)
                    return 0 if done is None else await self._unmute(room, done)
                room.muted.setdefault(participant_id, {})
                return await self._moderate(room, participant_id, await self._publishers())
            except (JanusError, JanusUnavailable) as exc:
                raise MediaUnavailable(str(exc)) from exc
            finally:
                if meeting_id not in self._rooms:
                    self._locks.pop(meeting_id, None)

    async def enforce_mutes(self) -> int:
        """Moderate the audio streams host-muted participants published since; how many."""
        return (await self.sweep())[0]

    async def sweep(self) -> tuple[int, int]:
        """One round of upkeep (the MH runs it every second): moderate the audio host-muted
        participants published since, and revoke the tokens no handle carried within
        `token_claim_seconds` of their issue. (audio streams moderated, tokens revoked)."""
        now = self._clock()
        rooms = self._rooms.values()
        # Janus's handles are listed (one admin call each) only when there is work: a host mute
        # in force, or a token whose deadline passed.
        due = any(d <= now for room in rooms for d in room.unclaimed.values())
        if not due and not any(room.muted for room in rooms):
            return 0, 0
        handles = await self._handles()
        in_use = {h.token for h in handles}
        publishers = [h for h in handles if h.publisher]
        moderated = revoked = 0
        for meeting_id in list(self._rooms):
            async with self._lock(meeting_id):
                room = self._rooms.get(meeting_id)
                if room is None:
                    continue
                for token, deadline in list(room.unclaimed.items()):
                    if token in in_use:
                        del room.unclaimed[token]  # claimed: it lives as long as the registration
                    elif now >= deadline:
                        room.dead.add(token)
                        await self._revoke(room, token)
                        revoked += 1
                for participant_id in list(room.muted):
                    moderated += await self._moderate(room, participant_id, publishers)
        if revoked:
            log.info("%d media tokens not used in time revoked", revoked)
        return moderated, revoked

    async def _publishers(self) -> list[_Handle]:
        return [h for h in await self._handles() if h.publisher]

    async def _handles(self) -> list[_Handle]:
        """Every handle of this Janus that carries a token (VideoRoom publishers with their
        feed, room and audio mids; any other handle with `publisher` False)."""
        found: list[_Handle] = []
        for session in await self._admin.list_sessions():
            try:
                handles = await self._admin.list_handles(session)
            except JanusError:  # the session ended meanwhile
                continue
            for handle in handles:
                try:
                    info = await self._admin.handle_info(session, handle)
                except JanusError:
                    continue
                token = info.get("token")
                if not isinstance(token, str):
                    continue
                plugin = info.get("plugin_specific")
                if not isinstance(plugin, dict) or plugin.get("type") != "publisher":
                    found.append(_Handle(handle, token))
                    continue
                streams = plugin.get("streams") or []
                mids = tuple(
                    str(s["mid"]) for s in streams if s.get("type") == "audio" and "mid" in s
                )
                try:
                    feed, room = int(plugin["id"]), int(plugin["room"])
                except (KeyError, TypeError, ValueError):
                    found.append(_Handle(handle, token))
                    continue
                found.append(_Handle(handle, token, True, room, feed, mids))
        return found

    async def _moderate(self, room: _Room, participant_id: str, publishers: list[_Handle]) -> int:
        """Mute the audio streams of the participant's publishers not muted yet; how many."""
        token = room.tokens.get(participant_id)
        done = room.muted.setdefault(participant_id, {})
        count = 0
        for p in publishers:
            if not p.publisher or p.token != token or p.room != room.number:
                continue
            for mid in p.audio_mids:
                if (p.handle, mid) not in done and await self._moderation(room, p.feed, mid, True):
                    done[(p.handle, mid)] = p.feed
                    count += 1
        return count

    async def _unmute(self, room: _Room, done: dict[tuple[int, str], int]) -> int:
        """Lift the mute of exactly the streams it was put on (one admin call each); how many."""
        count = 0
        for (_, mid), feed in done.items():
            count += await self._moderation(room, feed, mid, False)
        return count

    async def _moderation(self, room: _Room, feed: int, mid: str, mute: bool) -> bool:
        request = {"request": "moderate", "room": room.number, "secret": room.secret}
        try:
            await self._admin.room_request({**request, "id": feed, "mid": mid, "mute": mute})
        except JanusError as exc:  # left or unpublished meanwhile
            log.info("room %d: stream not moderated: %s", room.number, exc)
            return False
        return True

    def forget_all(self) -> int:
        """Janus restarted: its rooms and tokens are gone. How many rooms were forgotten."""
        count = len(self._rooms)
        self._rooms.clear()
        self._locks.clear()
        return count
