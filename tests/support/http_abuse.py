"""Abusive HTTP clients for the limit tests: a body streamed chunk by chunk over a raw socket
(so the test sees when the server answers, however early), and a peer address other than
127.0.0.1 (Linux routes all of 127.0.0.0/8 to loopback)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["OTHER_LOOPBACK", "StreamedAnswer", "client_from", "stream_body"]

OTHER_LOOPBACK = "127.0.0.2"


@dataclass(frozen=True)
class StreamedAnswer:
    status: int
    head: str
    body: bytes
    bytes_sent: int


async def stream_body(
    base_url: str,
    path: str,
    *,
    total: int,
    chunk_size: int = 64 * 1024,
    content_length: int | None = None,
    timeout: float = 30.0,
) -> StreamedAnswer:
    """POST `total` bytes to `path`, chunked (or with `content_length` declared, which may
    lie), stopping as soon as the server answers or hangs up; the answer and what was sent."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    framing = (
        f"Content-Length: {content_length}"
        if content_length is not None
        else "Transfer-Encoding: chunked"
    )
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n".encode()
    )
    chunk = b"x" * chunk_size
    answer = asyncio.create_task(reader.read(65536))
    sent = 0
    try:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):
                while sent < total and not answer.done():
                    if content_length is None:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    else:
                        writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
            raw = await answer
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), f"no HTTP answer: {raw[:200]!r}"
    return StreamedAnswer(int(status_line.split()[1]), head.decode(), body, sent)


def client_from(local_address: str, base_url: str, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `local_address` (a loopback address)."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=httpx.AsyncHTTPTransport(local_address=local_address),
        timeout=timeout,
    )
