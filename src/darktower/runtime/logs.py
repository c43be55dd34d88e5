"""Logging setup shared by the services, with a last line of defence for secrets.

Secrets are kept out of log calls by construction (settings hold them as `SecretStr`, errors
are built without URLs). `SecretRedactingFilter` is the belt to those braces: it replaces
every registered secret value in a formatted record, exception text and stack info included,
with `***`; a log call whose args do not fit its format is logged as given, not raised.

Two formats (`<SVC>_LOG_FORMAT`): `text`, one human line per record, and `json`, one JSON
object per line (`JsonFormatter`: time, level, logger, message, service, instance_id, and
trace_id / span_id while a span is current, exception / stack when there are). The redaction
filter runs before either formatter, so both see only scrubbed text.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from darktower.runtime.tracing import current_ids

__all__ = ["JsonFormatter", "LogFormat", "SecretRedactingFilter", "configure_logging"]

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


class LogFormat(StrEnum):
    """`<SVC>_LOG_FORMAT`: human lines, or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or a traceback are
    escaped, so a logged value cannot forge a line of its own)."""

    def __init__(self, service: str, instance_id: str) -> None:
        super().__init__()
        self._service = service
        self._instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
            "instance_id": self._instance_id,
        }
        ids = current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    log_format: LogFormat | str = LogFormat.TEXT,
    service: str = "",
    instance_id: str = "",
) -> None:
    """One stderr handler on the root logger, with secrets redacted from every record;
    `json` logs name `service` and `instance_id` on every line."""
    handler = logging.StreamHandler(sys.stderr)
    if LogFormat(log_format) is LogFormat.JSON:
        handler.setFormatter(JsonFormatter(service, instance_id))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    handler.addFilter(SecretRedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and uvicorn are chatty at INFO; their warnings still come through.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "grpc"):
        logging.getLogger(name).setLevel(logging.WARNING)
