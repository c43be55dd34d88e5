"""What every service process shares: the startup error and an in-loop uvicorn server."""

from __future__ import annotations

import contextlib

import uvicorn

__all__ = ["EmbeddedUvicorn", "StartupError", "parse_bind"]


class StartupError(RuntimeError):
    """The service cannot start with this configuration (the message is safe to print)."""


class EmbeddedUvicorn(uvicorn.Server):
    """A uvicorn server that runs inside our loop and leaves signals to our own handler."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        return

    def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def parse_bind(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) → (host, port); ValueError on anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
