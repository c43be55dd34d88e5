"""One VideoRoom per meeting, one Janus token per registered participant.

`MediaRooms.register(meeting, participant)` makes sure the meeting's room exists on this Janus
(created on first use: private, so `list` does not show it to clients; a random 52-bit number,
so it is not guessed; with a room secret nobody but the MH holds) and issues a fresh token: a
random 256-bit string, added both to Janus's stored tokens (`token_auth`: without one, a client
cannot even open a session; limited to the VideoRoom plugin) and to that room's `allowed` list
(without it in the list, a session cannot join the room). A token of one meeting therefore opens
a session but never enters another meeting's room. Registering again replaces the participant's
token (the old one is revoked); `end` revokes a participant's token, or destroys the meeting's
room and revokes all of its tokens.

Janus forgets everything when it restarts: `forget_all` drops the bookkeeping then, and the MC
registers participants again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
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


def _checked(meeting_id: str, participant_id: str | None) -> None:
    try:
        validate_id(meeting_id, "meeting_id")
        if participant_id is not None:
            validate_id(participant_id, "participant_id")
    except InvalidField as exc:
        raise InvalidMhRequest(exc.field, exc.reason) from exc


class MediaRooms:
    def __init__(self, admin: JanusAdmin, limits: RoomLimits | None = None) -> None:
        self._admin = admin
        self.limits = limits or RoomLimits()
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

    async def register(self, meeting_id: str, participant_id: str) -> Registration:
        _checked(meeting_id, participant_id)
        async with self._lock(meeting_id):
            try:
                return await self._register(meeting_id, participant_id)
            except (JanusError, JanusUnavailable) as exc:
                raise MediaUnavailable(str(exc)) from exc
            finally:
                if meeting_id not in self._rooms:
                    self._locks.pop(meeting_id, None)

    async def _register(self, meeting_id: str, participant_id: str) -> Registration:
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
        token = secrets.token_urlsafe(32)
        await self._admin.add_token(token)
        try:
            await self._allow(room, [token], "add")
        except (JanusError, JanusUnavailable):
            await self._admin.remove_token(token)
            raise
        old = room.tokens.get(participant_id)
        room.tokens[participant_id] = token
        if old is not None:
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
            if token is None:
                return False
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
            await self._admin.remove_token(token)
        log.info("room %d of meeting %s destroyed", room.number, meeting_id)
        return True

    def forget_all(self) -> int:
        """Janus restarted: its rooms and tokens are gone. How many rooms were forgotten."""
        count = len(self._rooms)
        self._rooms.clear()
        self._locks.clear()
        return count
