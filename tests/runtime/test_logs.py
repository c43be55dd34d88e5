"""The secret-redacting log filter as a table: wherever a secret reaches a log record (message,
args, nested args, mapping args, exception message and traceback, chained causes, stack
info), the formatted line holds `***` instead, and a bad log call still logs — in both log
formats, text lines and JSON lines (`JsonFormatter`)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from pydantic import ValidationError

from darktower.gc.settings import GcSettings
from darktower.mc.settings import McSettings
from darktower.runtime.logs import REDACTED, JsonFormatter, LogFormat, SecretRedactingFilter
from tests.support.tracing import memory_spans

SECRET = "s3cr3t-pa55"
URL = f"redis://:{SECRET}@cache.internal:6379/0"
TOKEN = "eyJhbGciOiJFZERTQSJ9.payload.signature"


@pytest.fixture(params=["text", "json"])
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler formats like the services' (message, exception, stack) in
    each log format, through the filter, into a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    if request.param == "json":
        handler.setFormatter(JsonFormatter("darktower-test", "test-1"))
    else:
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
    if text.startswith("{"):
        line = json.loads(text)
        assert (line["level"], line["message"]) == ("ERROR", "meeting m-1 on cache.internal")
        text = line["exception"]
    else:
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


# -- JSON lines -------------------------------------------------------------------------------


def _json_lines(out: io.StringIO) -> list[dict[str, object]]:
    lines = out.getvalue().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def json_logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("darktower-mc", "mc-7"))
    handler.addFilter(SecretRedactingFilter([SECRET]))
    logger = logging.getLogger(f"test.json.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def test_a_json_line_has_every_field_and_no_trace_outside_a_span(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = json_logged
    log.warning("meeting %s refused: %s", "m-1", "at capacity")
    [line] = _json_lines(out)
    assert line == {
        "time": line["time"],
        "level": "WARNING",
        "logger": log.name,
        "message": "meeting m-1 refused: at capacity",
        "service": "darktower-mc",
        "instance_id": "mc-7",
    }
    assert str(line["time"]).endswith("+00:00") and "T" in str(line["time"])


def test_a_json_line_carries_the_current_span(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    memory_spans()
    log, out = json_logged
    with trace.get_tracer("test").start_as_current_span("work") as span:
        log.info("inside")
    log.info("outside")
    inside, outside = _json_lines(out)
    context = span.get_span_context()
    assert inside["trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
    assert "trace_id" not in outside and "span_id" not in outside


def test_a_message_cannot_forge_a_json_line(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = json_logged
    forged = '\n{"level": "INFO", "message": "all good", "service": "darktower-mc"}\n'
    log.error("user said %s", forged)
    try:
        _raise(f"bad\n{SECRET}\r\n{forged}")
    except ValueError:
        log.exception("with a traceback")
    lines = _json_lines(out)  # every physical line is one whole JSON object
    assert [line["level"] for line in lines] == ["ERROR", "ERROR"]
    assert lines[0]["message"] == f"user said {forged}"
    assert SECRET not in out.getvalue()
    assert "ValueError: bad\n***" in str(lines[1]["exception"])


def test_the_log_format_setting_accepts_text_and_json_only() -> None:
    assert McSettings(log_format="json").log_format is LogFormat.JSON
    assert GcSettings().log_format is LogFormat.TEXT
    with pytest.raises(ValidationError):
        McSettings(log_format="xml")
