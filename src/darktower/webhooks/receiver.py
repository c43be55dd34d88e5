"""`darktower webhook-receiver`: a small verifying webhook receiver, for development.

It accepts `POST` on any path, and for each request:

* a declared or actual body over `max_body_bytes` (64 KiB) → 413, before verifying anything
  (a chunked body is counted as it arrives and refused at the first chunk over);
* a `Darktower-Signature` that does not verify against the API key's secret (missing,
  malformed, another key, a tampered body, `t` more than 5 min away: a replay) → 401 with the
  failed check as `reason`;
* a body that is not a JSON object → 400;
* otherwise 204, and the event is printed as one JSON line on stdout (flushed).

It never prints the secret. `create_receiver_app` is the ASGI app, for embedding and tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Final, TextIO

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from darktower.webhooks.signature import SIGNATURE_HEADER, SignatureError, verify

__all__ = ["MAX_BODY_BYTES", "create_receiver_app"]

MAX_BODY_BYTES: Final = 65_536


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_receiver_app(
    secret: str,
    *,
    out: TextIO | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    on_event: Callable[[dict[str, object]], None] | None = None,
) -> Starlette:
    """The receiver: verifies with `secret`, prints each accepted event to `out` (stdout)."""

    async def receive(request: Request) -> Response:
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLarge:
            return JSONResponse(
                {"error": "payload_too_large"}, status_code=413, headers={"Connection": "close"}
            )
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            verify(secret, request.headers.get(SIGNATURE_HEADER), body)
        except SignatureError as exc:
            return JSONResponse({"error": "bad_signature", "reason": exc.reason}, status_code=401)
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            event = None
        if not isinstance(event, dict):
            return JSONResponse({"error": "not_a_json_object"}, status_code=400)
        stream = out or sys.stdout
        stream.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
        stream.flush()
        if on_event is not None:
            on_event(event)
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
