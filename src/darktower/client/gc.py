"""How a `ClientSession` gets into a meeting: the GC's join answer (`ask_gc`) and the
WebSocket to the MC it names (`open_signaling`). Failures are `JoinRefused` (retryable or
not), `McUnreachable` for an MC that refused or timed out the connection."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from darktower.client.events import JoinRefused, McUnreachable
from darktower.common.tls_errors import tls_failure
from darktower.signaling.protocol import MAX_SERVER_FRAME_BYTES

__all__ = ["GcAnswer", "ask_gc", "open_signaling"]


@dataclass(frozen=True, slots=True)
class GcAnswer:
    mc_id: str
    user_id: str
    join_token: str
    signaling_url: str


async def ask_gc(
    http: httpx.AsyncClient,
    gc_url: str,
    meeting_id: str,
    body: dict[str, str],
    access_token: str | None,
) -> GcAnswer:
    """POST `body` to the GC's join route of `meeting_id`; its answer, or JoinRefused."""
    url = f"{gc_url}/v1/meetings/{quote(meeting_id, safe='')}/join"
    try:
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        response = await http.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        tls = tls_failure(exc)
        why = f": TLS handshake failed ({tls})" if tls else ""
        raise JoinRefused(
            "gc_unreachable", f"cannot reach the GC at {gc_url}{why}", retryable=True
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
        raise JoinRefused("no_signaling", f"MC {data.get('mc_id')} registered no client endpoint")
    return GcAnswer(
        mc_id=str(data["mc_id"]),
        user_id=str(data["user_id"]),
        join_token=data["join_token"],
        signaling_url=str(data["signaling_url"]),
    )


async def open_signaling(
    url: str, *, open_timeout: float, ssl_context: ssl.SSLContext | None
) -> ClientConnection:
    """The WebSocket to an MC (no proxy); `McUnreachable` if the connection is refused or
    times out, JoinRefused `mc_unreachable` for a TLS handshake that fails or an HTTP answer."""
    try:
        return await connect(
            url,
            open_timeout=open_timeout,
            max_size=MAX_SERVER_FRAME_BYTES,
            compression=None,
            proxy=None,
            ssl=ssl_context if url.startswith("wss://") else None,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        tls = tls_failure(exc)
        if tls:
            raise JoinRefused(
                "mc_unreachable",
                f"cannot open {url}: TLS handshake failed ({tls})",
                retryable=True,
            ) from exc
        # Refused or timed out: nobody there. An HTTP answer to the upgrade is somebody.
        unreachable = isinstance(exc, OSError | TimeoutError)
        raise (McUnreachable if unreachable else JoinRefused)(
            "mc_unreachable", f"cannot open {url}", retryable=True
        ) from exc
