"""Errors of the Meeting Controller.

::

    McError                 code "internal"          a fault of the MC itself
    ├── InvalidArgument     code "invalid_argument"  a malformed request; names the field
    ├── AdmissionRefused    code "refused"           a meeting refused for load or health
    └── StateUnavailable    code "unavailable"       Redis or another dependency failed

Each error carries a stable `code`. Only the gRPC/HTTP boundary turns these into status codes,
always with `raise ... from exc`. No message ever contains a URL, a credential or a stack trace.
"""

from __future__ import annotations

from typing import ClassVar

from darktower.mc.admission import Rejection

__all__ = ["AdmissionRefused", "InvalidArgument", "McError", "StateUnavailable"]


class McError(Exception):
    """Base of every Meeting Controller error."""

    code: ClassVar[str] = "internal"


class InvalidArgument(McError):
    """A request field is missing or malformed; the message is `"<field>: <reason>"`."""

    code: ClassVar[str] = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class AdmissionRefused(McError):
    """The controller will not take the meeting; `rejection` says why."""

    code: ClassVar[str] = "refused"

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"admission refused: {rejection.value}")
        self.rejection = rejection


class StateUnavailable(McError):
    """Redis or another dependency failed.

    The message is written by the caller and must describe the failure without the
    dependency's URL or credentials; chain the original exception with `from` instead.
    """

    code: ClassVar[str] = "unavailable"

    def __init__(self, message: str = "meeting state store unavailable") -> None:
        super().__init__(message)
