"""The Janus admin API over HTTP (loopback), as the MH uses it.

Every request carries the admin secret; the VideoRoom requests (through `message_plugin`) also
carry the room admin key. Neither appears in an exception, a log record or a repr: errors name
the request and Janus's error code and reason only.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

__all__ = [
    "VIDEOROOM",
    "JanusAdmin",
    "JanusError",
    "JanusUnavailable",
    "LoadFigures",
    "bytes_last_second",
]

VIDEOROOM = "janus.plugin.videoroom"
# A Janus answer is a few KiB; a list of 10 000 sessions is still far under this.
_MAX_ANSWER_BYTES = 4 * 1024 * 1024
# `handle_info` calls in flight at once while a load report is measured.
HANDLE_INFO_CONCURRENCY = 8


class JanusUnavailable(Exception):
    """Janus did not answer (not running, not listening, timed out, garbage)."""


class JanusError(Exception):
    """Janus answered with an error."""

    def __init__(self, request: str, code: int, reason: str) -> None:
        super().__init__(f"janus {request}: error {code}: {reason}")
        self.code = code


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """What the admin API says about the load: sessions, publishers and subscriber handles, and
    the media bitrate (bits per second over Janus's last second, summed over every handle: what
    Janus 1.x measures, the media it receives; its per-second figure for what it sends stays 0)."""

    sessions: int
    publishers: int
    subscribers: int
    rooms: int
    bitrate_bps: int = 0


def _lastsec_bytes(node: Any) -> int:
    if isinstance(node, dict):
        return sum(
            value
            if "bytes_lastsec" in key and isinstance(value, int) and value > 0
            else _lastsec_bytes(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return sum(_lastsec_bytes(item) for item in node)
    return 0


def bytes_last_second(info: dict[str, Any]) -> int:
    """The bytes a handle moved over the last second, from its `handle_info`: every
    `bytes_lastsec` figure of its `webrtc` part. Janus 1.x gives one per medium and direction
    (`webrtc.media.<mid>.stats.in` and `.out`; simulcast layers apart); the plugin's own part
    is not media stats and is left out."""
    return _lastsec_bytes(info.get("webrtc"))


class JanusAdmin:
    def __init__(
        self,
        admin_url: str,
        admin_secret: SecretStr,
        room_admin_key: SecretStr,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._url = admin_url
        self._secret = admin_secret
        self._room_key = room_admin_key
        self._http = httpx.AsyncClient(timeout=timeout, trust_env=False)

    def __repr__(self) -> str:
        return f"JanusAdmin({self._url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, body: dict[str, Any], path: str = "") -> dict[str, Any]:
        name = str(body.get("janus"))
        body = {**body, "transaction": secrets.token_hex(8)}
        body["admin_secret"] = self._secret.get_secret_value()
        try:
            answer = await self._http.post(self._url + path, json=body)
            if len(answer.content) > _MAX_ANSWER_BYTES:
                raise JanusUnavailable(f"janus {name}: oversized answer")
            data = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JanusUnavailable(f"janus {name}: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise JanusUnavailable(f"janus {name}: not a JSON object")
        if data.get("janus") == "error":
            error = data.get("error") or {}
            raise JanusError(name, int(error.get("code", 0)), str(error.get("reason", "")))
        return data

    async def info(self) -> dict[str, Any]:
        return await self._call({"janus": "info"})

    async def ping(self) -> None:
        await self._call({"janus": "ping"})

    async def add_token(self, token: str) -> None:
        await self._call({"janus": "add_token", "token": token, "plugins": [VIDEOROOM]})

    async def remove_token(self, token: str) -> None:
        try:
            await self._call({"janus": "remove_token", "token": token})
        except JanusError as exc:
            if exc.code != 470:  # JANUS_ERROR_TOKEN_NOT_FOUND: already gone
                raise

    async def room_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A VideoRoom request through the admin API; its `response`, checked for an error."""
        body = {"request": {**request, "admin_key": self._room_key.get_secret_value()}}
        data = await self._call({"janus": "message_plugin", "plugin": VIDEOROOM, **body})
        response = data.get("response")
        if not isinstance(response, dict):
            raise JanusUnavailable("janus message_plugin: no response")
        if response.get("videoroom") == "event" and "error_code" in response:
            raise JanusError(
                f"videoroom {request.get('request')}",
                int(response["error_code"]),
                str(response.get("error", "")),
            )
        return response

    async def list_sessions(self) -> list[int]:
        data = await self._call({"janus": "list_sessions"})
        return [int(s) for s in data.get("sessions") or []]

    async def list_handles(self, session_id: int) -> list[int]:
        data = await self._call({"janus": "list_handles"}, f"/{session_id}")
        return [int(h) for h in data.get("handles") or []]

    async def handle_info(self, session_id: int, handle_id: int) -> dict[str, Any]:
        """The admin API's view of one handle: its `token` (the one it was attached with) and
        the plugin's `plugin_specific` (VideoRoom: type, room, id, streams)."""
        data = await self._call({"janus": "handle_info"}, f"/{session_id}/{handle_id}")
        info = data.get("info")
        return info if isinstance(info, dict) else {}

    async def _handle_load(
        self, session: int, handle: int, limit: asyncio.Semaphore
    ) -> tuple[int, bool]:
        """A handle's bytes of the last second, and whether it is a subscription forwarding a
        feed (a VideoRoom subscriber whose PeerConnection is up)."""
        async with limit:
            try:
                info = await self.handle_info(session, handle)
            except JanusError:  # the handle (or its session) went away meanwhile
                return 0, False
        plugin = info.get("plugin_specific")
        flags = info.get("flags")
        subscribed = (
            isinstance(plugin, dict)
            and plugin.get("type") == "subscriber"
            and isinstance(flags, dict)
            and flags.get("ready") is True
        )
        return bytes_last_second(info), subscribed

    async def load(self) -> LoadFigures:
        """Sessions, publishers (participants publishing in any room), subscriptions and the
        measured bitrate, from each handle's `handle_info` (at most `HANDLE_INFO_CONCURRENCY`
        at once): its bytes of the last second, and whether it is a subscriber
        with its PeerConnection up (a subscriber handle whose feed left, or not negotiated
        yet, forwards nothing and is not counted)."""
        sessions = await self.list_sessions()
        handles: list[tuple[int, int]] = []
        for session in sessions:
            try:
                handles += [(session, h) for h in await self.list_handles(session)]
            except JanusError:  # the session ended between the two calls
                continue
        limit = asyncio.Semaphore(HANDLE_INFO_CONCURRENCY)
        per_handle = await asyncio.gather(*(self._handle_load(s, h, limit) for s, h in handles))
        rooms = (await self.room_request({"request": "list"})).get("list") or []
        publishers = 0
        for room in rooms:
            number = room.get("room")
            try:
                answer = await self.room_request({"request": "listparticipants", "room": number})
            except JanusError:  # destroyed meanwhile
                continue
            publishers += sum(1 for p in answer.get("participants") or [] if p.get("publisher"))
        return LoadFigures(
            sessions=len(sessions),
            publishers=publishers,
            subscribers=sum(1 for _, subscribed in per_handle if subscribed),
            rooms=len(rooms),
            bitrate_bps=8 * sum(bytes_ for bytes_, _ in per_handle),
        )
