"""The receiving side: a grpc.aio server interceptor that admits only valid service tokens.

Installed on a server, it checks every RPC of that server before the servicer sees it — and
before the request body is read: the check needs only the call's metadata, and a refused call is
answered by a handler that never reads its request stream, so an unauthenticated caller cannot
make the server receive or deserialize a message (docs/reference.md):

* an invalid or missing token → UNAUTHENTICATED with `UNAUTHENTICATED_MESSAGE`, the same text
  whatever failed, so a caller learns nothing about which check it tripped;
* a valid token of a caller type the server does not serve → PERMISSION_DENIED;
* otherwise the verified `ServiceClaims` are put in `current_claims` for the servicer to read
  and the call proceeds.

One method passes without a token, whatever the call's metadata says: the standard health
check, `/grpc.health.v1.Health/Check` (`UNAUTHENTICATED_METHODS`), so that a Kubernetes `grpc:`
probe — which carries no token — can ask whether the server is serving. It answers SERVING or
NOT_SERVING from memory (`darktower.runtime.grpc_health`) and changes nothing. Every other
method, the health service's streaming `Watch` and server reflection included, still needs a
valid token.

Every outcome is counted (`service_auth_success_total`, `service_auth_failures_total` by
reason). The token itself never reaches a log record, a metric or a status message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from prometheus_client import Counter

from darktower.auth.errors import (
    FAILURE_REASONS,
    WRONG_CALLER,
    AuthenticationFailed,
    CallerNotAllowed,
)
from darktower.auth.grpc_server import GRPC_SERVER_OPTIONS
from darktower.auth.tokens import (
    AUTHORIZATION_HEADER,
    BEARER_PREFIX,
    MAX_TOKEN_BYTES,
    ServiceClaims,
    TokenVerifier,
)

__all__ = [
    "AUTH_FAILURES",
    "AUTH_SUCCESSES",
    "GRPC_SERVER_OPTIONS",
    "MAX_TOKEN_BYTES",
    "UNAUTHENTICATED_MESSAGE",
    "UNAUTHENTICATED_METHODS",
    "ServiceAuthInterceptor",
    "current_claims",
    "extract_bearer_token",
]

logger = logging.getLogger(__name__)

UNAUTHENTICATED_MESSAGE = "missing or invalid service token"
UNAUTHENTICATED_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
"""The full method names admitted without a token (compared exactly)."""

AUTH_FAILURES = Counter(
    "service_auth_failures_total",
    "Service calls refused by token checking, by server and reason.",
    ["service", "reason"],
)
AUTH_SUCCESSES = Counter(
    "service_auth_success_total",
    "Service calls admitted by token checking, by server.",
    ["service"],
)

# The claims of the call being served. grpc.aio runs the interceptor and the handler in one
# contextvars.Context per RPC, so a servicer reads here what the interceptor verified.
current_claims: ContextVar[ServiceClaims | None] = ContextVar("current_claims", default=None)

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:  # the runtime classes are not generic
    _ServerInterceptor = grpc.aio.ServerInterceptor
    _Handler = grpc.RpcMethodHandler


def extract_bearer_token(values: Sequence[str]) -> str:
    """The token from the `authorization` metadata values of one call.

    Raises `AuthenticationFailed`: `missing` (no value), `malformed` (more than one — which
    one a proxy or a server would honour is ambiguous), `bad_prefix` (not exactly "Bearer "),
    `empty`, `too_large` (over MAX_TOKEN_BYTES; measured before anything parses the token).
    """
    if not values:
        raise AuthenticationFailed("missing")
    if len(values) > 1:
        raise AuthenticationFailed("malformed")
    value = values[0]
    if not value.startswith(BEARER_PREFIX):
        raise AuthenticationFailed("bad_prefix")
    token = value[len(BEARER_PREFIX) :]
    if not token:
        raise AuthenticationFailed("empty")
    if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        raise AuthenticationFailed("too_large")
    return token


def _authorization_values(details: grpc.HandlerCallDetails) -> list[str]:
    values: list[str] = []
    for key, value in details.invocation_metadata or ():
        if key == AUTHORIZATION_HEADER:
            # Non-`-bin` metadata arrives as str; bytes would mean a binary header, not a token.
            values.append(value if isinstance(value, str) else "")
    return values


def _rejection(code: grpc.StatusCode, message: str) -> _Handler:
    """A handler whose only behaviour is to abort the call, without reading its request.

    grpc.aio interceptors cannot abort by themselves: they must hand back a handler. A unary
    request handler would make grpc.aio receive the whole message and run its deserializer
    before the behaviour starts; a request-streaming one gets a lazy iterator, never consumed
    here, so the body is neither received into Python nor parsed (no deserializer at all). On
    the wire a status without a response is the same for every kind of method, so one kind
    serves all, and an unknown method looks like a known one to an unauthenticated caller.
    """

    async def abort(_requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return grpc.stream_unary_rpc_method_handler(abort)


class ServiceAuthInterceptor(_ServerInterceptor):
    """Checks the service token of every RPC on the server it is installed on.

    `service` ("mc" or "gc") names this server in metrics and logs. A server that hosts
    services for different callers (the GC: MCs call one service, MHs another) passes
    `routes`, method-name prefixes (`/package.Service/`) mapped to their own verifiers;
    methods matching no route use `verifier`.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        service: str,
        routes: Mapping[str, TokenVerifier] | None = None,
    ) -> None:
        self._verifier = verifier
        self._routes = dict(routes or {})
        self._service = service
        # Create every series up front so that dashboards and tests see zeros, not gaps; the
        # success one is kept (counted on every call: no label lookup each time).
        self._successes = AUTH_SUCCESSES.labels(service)
        for reason in (*FAILURE_REASONS, WRONG_CALLER):
            AUTH_FAILURES.labels(service, reason)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        method = handler_call_details.method
        if method in UNAUTHENTICATED_METHODS:
            return await continuation(handler_call_details)
        try:
            token = extract_bearer_token(_authorization_values(handler_call_details))
            claims = await self._verifier_for(method).verify_refreshing(token)
        except AuthenticationFailed as exc:
            self._count_failure(exc.reason, method)
            return _rejection(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        except CallerNotAllowed as exc:
            self._count_failure(WRONG_CALLER, method)
            return _rejection(grpc.StatusCode.PERMISSION_DENIED, str(exc))

        self._successes.inc()
        logger.debug(
            "service call admitted: service=%s method=%s caller=%s issuer=%s subject=%s",
            self._service,
            method,
            claims.service_type.value,
            claims.issuer,
            claims.subject,
        )
        current_claims.set(claims)
        return await continuation(handler_call_details)

    @property
    def verifiers(self) -> list[TokenVerifier]:
        """Every distinct verifier of this server (to keep them on rotated keys)."""
        found: list[TokenVerifier] = []
        for verifier in (self._verifier, *self._routes.values()):
            if all(verifier is not known for known in found):
                found.append(verifier)
        return found

    def _verifier_for(self, method: str) -> TokenVerifier:
        for prefix, verifier in self._routes.items():
            if method.startswith(prefix):
                return verifier
        return self._verifier

    def _count_failure(self, reason: str, method: str) -> None:
        AUTH_FAILURES.labels(self._service, reason).inc()
        logger.info(
            "service call refused: service=%s method=%s reason=%s", self._service, method, reason
        )
