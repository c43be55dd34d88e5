"""The reason behind a failed TLS connection, for one-line messages of the HTTP/WebSocket
clients (`darktower join`/`status`/`client`, `ClientSession`); gRPC peers have theirs in
`darktower.runtime.tls.describe_rpc_error`."""

from __future__ import annotations

import ssl

__all__ = ["tls_failure"]


def tls_failure(exc: BaseException) -> str | None:
    """`certificate verify failed: unable to get local issuer certificate`, `wrong version
    number`, ... when `exc` was caused by a TLS failure (searched along its causes); else None."""
    seen: BaseException | None = exc
    for _ in range(10):  # a cause chain is short; a cycle must not loop
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return seen.reason.lower().replace("_", " ") if seen.reason else str(seen)
        seen = seen.__cause__ or seen.__context__
    return None
