"""Errors of the Meeting Controller.

::

    McError                 code "internal"          a fault of the MC itself
    ├── InvalidMcRequest    code "invalid_argument"  a malformed request; names the field
    └── StateUnavailable    code "unavailable"       Redis or another dependency failed

A refusal for load or health is not an error: `Assigner.assign` answers a `Rejection`. Each
error carries a stable `code` in lower snake case, as the GC's do. Only the gRPC/HTTP boundary
turns these into status codes (`darktower.mc.grpc_service.status_for`). No message ever
contains a URL, a credential or a stack trace.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["InvalidMcRequest", "McError", "StateUnavailable"]


class McError(Exception):
    """Base of every Meeting Controller error."""

    code: ClassVar[str] = "internal"


class InvalidMcRequest(McError):
    """A request field is missing or malformed; the message is `"<field>: <reason>"`."""

    code: ClassVar[str] = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class StateUnavailable(McError):
    """Redis or another dependency failed.

    The message is written by the caller and must describe the failure without the
    dependency's URL or credentials; chain the original exception with `from` instead.
    """

    code: ClassVar[str] = "unavailable"

    def __init__(self, message: str = "meeting state store unavailable") -> None:
        super().__init__(message)
