"""Abusive HTTP clients for the limit tests: a body streamed chunk by chunk over a raw socket
(so the test sees when the server answers, however early), and a peer address other than
127.0.0.1 (Linux routes all of 127.0.0.0/8 to loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
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
    lie), stopping as soon as the server answers or hangs up; the answer and what was sent.

    A blocking socket in a thread: asyncio's streams drop an answer already received when a
    later write meets the server's reset, and a server that answers early and closes resets."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.to_thread(
        _stream, url.hostname, url.port, path, total, chunk_size, content_length, timeout
    )


def _stream(
    host: str,
    port: int,
    path: str,
    total: int,
    chunk_size: int,
    content_length: int | None,
    timeout: float,
) -> StreamedAnswer:
    framing = (
        f"Content-Length: {content_length}"
        if content_length is not None
        else "Transfer-Encoding: chunked"
    )
    chunk = b"x" * chunk_size
    frame = chunk if content_length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n".encode()
        )
        with contextlib.suppress(ConnectionError):
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)
                sent += len(chunk)
        raw = b""
        with contextlib.suppress(ConnectionError):
            while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
                data = sock.recv(65536)
                if not data:
                    break
                raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), f"no HTTP answer: {raw[:200]!r}"
    return StreamedAnswer(int(status_line.split()[1]), head.decode(), body, sent)


def _length(raw: bytes) -> int:
    for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def client_from(local_address: str, base_url: str, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `local_address` (a loopback address)."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=httpx.AsyncHTTPTransport(local_address=local_address),
        timeout=timeout,
    )
