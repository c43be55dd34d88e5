"""Logging setup shared by the services, with a last line of defence for secrets.

Secrets are kept out of log calls by construction (settings hold them as `SecretStr`, errors
are built without URLs). `SecretRedactingFilter` is the belt to those braces: it replaces
every registered secret value in a formatted record, exception text and stack info included,
with `***`; a log call whose args do not fit its format is logged as given, not raised.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

__all__ = ["SecretRedactingFilter", "configure_logging"]

REDACTED = "***"


class SecretRedactingFilter(logging.Filter):
    """Rewrites records so that none of `secrets` (non-empty strings) appears in them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # The caller's format and args do not fit: log both rather than raise into the
            # caller (a filter's exception is not caught by logging's error handling).
            message = f"{record.msg} (args that do not fit it: {record.args!r})"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self._scrub(message), None
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        record.exc_info = None  # already rendered into exc_text, scrubbed
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        return True


def configure_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """One stderr handler on the root logger, with secrets redacted from every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(SecretRedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and uvicorn are chatty at INFO; their warnings still come through.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "grpc"):
        logging.getLogger(name).setLevel(logging.WARNING)
