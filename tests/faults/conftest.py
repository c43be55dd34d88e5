"""Fixtures of the fault-injection suite: keys, a fresh database, a `FaultFleet`, the
recovery-time record of each scenario.

Registers the `faults` marker (until pyproject lists it). Nothing here is autouse, so the
other test modules of this directory see only what they ask for.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import redis

from darktower.auth.keys import generate_key_files
from tests.e2e.fleet import fresh_database
from tests.faults.harness import FaultFleet
from tests.faults.recovery_times import (
    RecoveryLog,
    ScenarioRecord,
    markdown_table,
    recording_enabled,
)

_LOG = RecoveryLog()
_REPORT_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault-injection scenarios with real processes (pytest -m faults)"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORT_KEY, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _LOG.records:
        return
    terminalreporter.section("fault scenarios: recovery times")
    terminalreporter.write_line(markdown_table([vars(r) for r in _LOG.records]))
    if recording_enabled():
        terminalreporter.write_line(f"written to {_LOG.write()}")


@pytest.fixture(scope="session")
def fault_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`{gc,mc,mh}.key` / `.pub` for every process of the suite."""
    out = tmp_path_factory.mktemp("fault-keys")
    generate_key_files(out)
    return out


@pytest.fixture
def fault_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database for this test (SQLite file, or a PostgreSQL schema)."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def fault_fleet(
    tmp_path: Path,
    fault_keys: Path,
    redis_url: str,
    redis_db: redis.Redis,
    fault_database_url: str,  # set up first, so dropped only after the fleet is killed
) -> Iterator[FaultFleet]:
    """A `FaultFleet`; every process and proxy it started is stopped afterwards."""
    with FaultFleet(tmp_path=tmp_path, key_dir=fault_keys, redis_url=redis_url) as fleet:
        yield fleet


@pytest.fixture
def recovery(request: pytest.FixtureRequest) -> Iterator[ScenarioRecord]:
    """This scenario's record; it enters the session's table with the test's outcome."""
    record = ScenarioRecord(scenario="?", title=request.node.name, injected="", held="")
    yield record
    reports = request.node.stash.get(_REPORT_KEY, {})
    call = reports.get("call")
    if call is None:
        record.outcome = "skipped"
    elif hasattr(call, "wasxfail"):
        record.outcome = "xfailed"
    else:
        record.outcome = call.outcome
    _LOG.add(record)
