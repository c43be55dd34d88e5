"""One gRPC edge for every service: a decorator factory that turns an RPC method's exceptions
into a status in one place, so no service answers grpc-aio's default UNKNOWN.

`grpc_edge(status_for, log=...)` gives a decorator for servicer methods. A method that returns
is answered as is; one that raises is answered with `status_for(exc)`, an `EdgeStatus` (code,
caller-safe message, outcome for metrics and logs). A status the method chose itself
(`context.abort`) passes through untouched.

* Anything `status_for` maps to INTERNAL is unexpected: logged at ERROR as "<rpc> failed:
  <exception type>" — with its traceback unless `log_traceback=False` (a service whose
  exceptions may carry a connection string logs the type only) — and reported to
  `on_internal(rpc)` (a counter). The caller gets the fixed message, never the exception's text.
* Any other status is a refusal: reported to `on_refusal(rpc, exc, status)` when given, else
  logged at INFO as "<rpc> refused: <exception>".
* `on_result(rpc, outcome)` (a per-RPC counter) hears every call once: "ok" or the outcome.

The MC, MH and GC edges (`darktower.mc.grpc_service`, `darktower.mh.grpc_service`,
`darktower.gc.grpc_edge`) are this factory with their own `status_for` and hooks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol, TypeVar

import grpc
import grpc.aio

__all__ = ["INTERNAL_MESSAGE", "Context", "EdgeStatus", "RpcDecorator", "RpcMethod", "grpc_edge"]

INTERNAL_MESSAGE = "internal error"

Context = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S")
_Q = TypeVar("_Q")
_R = TypeVar("_R")
RpcMethod = Callable[[_S, _Q, Context], Awaitable[_R]]


class EdgeStatus(NamedTuple):
    """What a failed RPC answers: `code`, a caller-safe `message`, and the `outcome` counted
    and logged ("invalid", "unavailable", "error", …)."""

    code: grpc.StatusCode
    message: str
    outcome: str


class RpcDecorator(Protocol):
    """What `grpc_edge` gives: wraps any servicer method, keeping its signature."""

    def __call__(self, method: RpcMethod[_S, _Q, _R], /) -> RpcMethod[_S, _Q, _R]: ...


def grpc_edge(
    status_for: Callable[[Exception], EdgeStatus],
    *,
    log: logging.Logger,
    on_internal: Callable[[str], None] | None = None,
    on_refusal: Callable[[str, Exception, EdgeStatus], None] | None = None,
    on_result: Callable[[str, str], None] | None = None,
    log_traceback: bool = True,
) -> RpcDecorator:
    """A decorator for a servicer's RPC methods (see the module doc for the hooks)."""

    def decorate(method: RpcMethod[_S, _Q, _R]) -> RpcMethod[_S, _Q, _R]:
        rpc = method.__name__

        @functools.wraps(method)
        async def call(self: _S, request: _Q, context: Context) -> _R:
            try:
                response = await method(self, request, context)
            except grpc.aio.AbortError:
                raise  # the method already chose its status
            except Exception as exc:
                status = status_for(exc)
                if on_result is not None:
                    on_result(rpc, status.outcome)
                if status.code is grpc.StatusCode.INTERNAL:
                    if on_internal is not None:
                        on_internal(rpc)
                    # The type only in the message; the traceback (if kept) goes to the log.
                    log.error(
                        "%s failed: %s",
                        rpc,
                        type(exc).__name__,
                        exc_info=exc if log_traceback else None,
                    )
                elif on_refusal is not None:
                    on_refusal(rpc, exc, status)
                else:
                    log.info("%s refused: %s", rpc, exc)
                await context.abort(status.code, status.message)
            if on_result is not None:
                on_result(rpc, "ok")
            return response

        return call

    return decorate
