"""Errors of the Global Controller.

::

    GcError                      code "internal"          a fault of the GC itself
    ├── InvalidGcRequest         code "invalid_argument"  a malformed request; names the field
    ├── NoControllerAvailable    code "no_controller"     no MC would take the meeting
    ├── NoMediaHandlerAvailable  code "no_media_handler"  no MH to hand to the meeting
    ├── CallerMismatch           code "caller_mismatch"   a caller acting for another id
    └── GcUnavailable            code "unavailable"       a dependency (the database) failed

Each error carries a stable `code`. Only the gRPC/HTTP boundary turns these (and the store's
`StoreError`s) into status codes, always with `raise ... from exc`. No message ever contains
SQL, a URL, a credential or a stack trace.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CallerMismatch",
    "GcError",
    "GcUnavailable",
    "InvalidGcRequest",
    "NoControllerAvailable",
    "NoMediaHandlerAvailable",
]


class GcError(Exception):
    """Base of every Global Controller error."""

    code: ClassVar[str] = "internal"


class InvalidGcRequest(GcError):
    """A request field is missing or malformed; the message is `"<field>: <reason>"`."""

    code: ClassVar[str] = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NoControllerAvailable(GcError):
    """No MC could host the meeting.

    `reason` is a short label-safe word (e.g. "no_healthy_mc", "all_refused") fit for a
    metric label and an HTTP body; `detail` is a human sentence about it.
    """

    code: ClassVar[str] = "no_controller"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"no meeting controller available ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class NoMediaHandlerAvailable(GcError):
    """No MH could be handed to the meeting; `detail` says why."""

    code: ClassVar[str] = "no_media_handler"

    def __init__(self, detail: str) -> None:
        super().__init__(f"no media handler available: {detail}")
        self.detail = detail


class CallerMismatch(GcError):
    """A request names an MC or MH (or a meeting of an MC) other than the caller its token's
    bound key vouches for. The message is fixed; `rpc` is for the metric label."""

    code: ClassVar[str] = "caller_mismatch"
    MESSAGE: ClassVar[str] = "caller may not act for this id"

    def __init__(self, rpc: str) -> None:
        super().__init__(self.MESSAGE)
        self.rpc = rpc


class GcUnavailable(GcError):
    """A dependency of the GC (the database) failed; the outcome of the request is unknown.

    The message is fixed by the raiser and names no URL, SQL or credential; chain the
    original exception with `from` instead.
    """

    code: ClassVar[str] = "unavailable"

    def __init__(self, message: str = "registry database unavailable") -> None:
        super().__init__(message)
