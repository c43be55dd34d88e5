"""The Janus admin API over HTTP (loopback), as the MH uses it.

Every request carries the admin secret; the VideoRoom requests (through `message_plugin`) also
carry the room admin key. Neither appears in an exception, a log record or a repr: errors name
the request and Janus's error code and reason only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

__all__ = ["VIDEOROOM", "JanusAdmin", "JanusError", "JanusUnavailable", "LoadFigures"]

VIDEOROOM = "janus.plugin.videoroom"
# A Janus answer is a few KiB; a list of 10 000 sessions is still far under this.
_MAX_ANSWER_BYTES = 4 * 1024 * 1024


class JanusUnavailable(Exception):
    """Janus did not answer (not running, not listening, timed out, garbage)."""


class JanusError(Exception):
    """Janus answered with an error."""

    def __init__(self, request: str, code: int, reason: str) -> None:
        super().__init__(f"janus {request}: error {code}: {reason}")
        self.code = code


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """What the admin API says about the load: sessions, publishers and subscriber handles."""

    sessions: int
    publishers: int
    subscribers: int
    rooms: int


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

    async def load(self) -> LoadFigures:
        """Sessions, publishers (participants publishing in any room) and subscriber handles
        (VideoRoom handles beyond one per publisher)."""
        sessions = await self.list_sessions()
        handles = 0
        for session in sessions:
            try:
                handles += len(await self.list_handles(session))
            except JanusError:  # the session ended between the two calls
                continue
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
            subscribers=max(0, handles - publishers),
            rooms=len(rooms),
        )
