"""The secret-redacting log filter as a table: wherever a secret reaches a log record (message,
args, nested args, mapping args, exception message and traceback, chained causes, stack
info), the formatted line holds `***` instead, and a bad log call still logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from darktower.runtime.logs import REDACTED, SecretRedactingFilter

SECRET = "s3cr3t-pa55"
URL = f"redis://:{SECRET}@cache.internal:6379/0"
TOKEN = "eyJhbGciOiJFZERTQSJ9.payload.signature"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler formats like the services' (message, exception, stack)
    through the filter, into a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretRedactingFilter([SECRET, URL, TOKEN, ""]))
    logger = logging.getLogger(f"test.redaction.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def _raise(message: str) -> None:
    raise ValueError(message)


def _exception_in_message(log: logging.Logger) -> None:
    try:
        _raise(f"cannot connect to {URL}")
    except ValueError:
        log.exception("connect failed")


def _exception_with_cause(log: logging.Logger) -> None:
    try:
        try:
            _raise(f"auth with {SECRET} refused")
        except ValueError as exc:
            raise RuntimeError("startup failed") from exc
    except RuntimeError:
        log.error("giving up", exc_info=True)


def _exception_in_a_local_line(log: logging.Logger) -> None:
    # The traceback quotes this source line, secret included.
    try:
        raise KeyError("s3cr3t-pa55")
    except KeyError:
        log.warning("lookup failed", exc_info=True)


def _exc_info_tuple(log: logging.Logger) -> None:
    try:
        _raise(TOKEN)
    except ValueError as exc:
        log.error("token rejected", exc_info=(type(exc), exc, exc.__traceback__))


def _stack_info_record(log: logging.Logger) -> None:
    record = log.makeRecord(
        log.name,
        logging.INFO,
        __file__,
        1,
        "stack here",
        None,
        None,
        sinfo=f'Stack (most recent call last):\n  File "x.py", line 1, in f\n    use("{SECRET}")',
    )
    log.handle(record)


def _stack_info_call(log: logging.Logger) -> None:
    log.info("where am I (%s)", "s3cr3t-pa55", stack_info=True)


CASES: list[tuple[str, Callable[[logging.Logger], None]]] = [
    ("in the message", lambda log: log.info(f"connecting to {URL}")),
    ("an arg", lambda log: log.info("connecting to %s", URL)),
    ("two args", lambda log: log.info("%s then %s", SECRET, TOKEN)),
    ("a repr arg", lambda log: log.info("settings %r", {"redis_url": URL})),
    ("nested args", lambda log: log.info("nested %s", [("a", {"b": [SECRET]})])),
    ("a mapping arg", lambda log: log.info("%(url)s and %(n)d", {"url": URL, "n": 3})),
    ("an object whose str has it", lambda log: log.info("%s", ValueError(TOKEN))),
    ("exception message", _exception_in_message),
    ("chained exception", _exception_with_cause),
    ("traceback source line", _exception_in_a_local_line),
    ("exc_info tuple", _exc_info_tuple),
    ("stack_info on a record", _stack_info_record),
    ("stack_info from a call", _stack_info_call),
    ("secret inside a longer secret", lambda log: log.info("url=%s pw=%s", URL, SECRET)),
]


@pytest.mark.parametrize(("case", "emit"), CASES, ids=[c for c, _ in CASES])
def test_no_secret_reaches_the_formatted_line(
    logged: tuple[logging.Logger, io.StringIO],
    case: str,
    emit: Callable[[logging.Logger], None],
) -> None:
    log, out = logged
    emit(log)
    text = out.getvalue()
    assert text, f"{case}: nothing was logged"
    for secret in (SECRET, URL, TOKEN, "pa55"):
        assert secret not in text, f"{case}: {secret!r} in {text!r}"
    assert REDACTED in text


def test_what_is_not_secret_is_kept(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    try:
        _raise(f"cannot connect to {URL}")
    except ValueError:
        log.exception("meeting %s on %s", "m-1", "cache.internal")
    text = out.getvalue()
    assert text.startswith("ERROR ")
    assert "meeting m-1 on cache.internal" in text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: cannot connect to ***" in text


def test_a_bad_log_call_still_logs_and_does_not_raise(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    log.info("%d meetings on %s", "not-a-number", URL)  # the caller's bug, not a crash
    text = out.getvalue()
    assert URL not in text and SECRET not in text
    assert "%d meetings on %s" in text


def test_without_secrets_records_pass_untouched() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s", ("b",), None)
    assert SecretRedactingFilter(["", ""]).filter(record)
    assert (record.msg, record.args) == ("a %s", ("b",))
