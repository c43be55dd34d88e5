"""`darktower mh-sim` logs JSON lines with `MH_LOG_FORMAT=json` (its `--log-format` option reads
that variable), naming its service and instance; the services' settings document their
`*_LOG_FORMAT` in `--help` (read from the settings classes)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.settings import GcSettings
from darktower.mc.settings import McSettings
from darktower.runtime.settings_doc import env_lines
from tests.support.processes import start_darktower
from tests.support.tracing import log_lines
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_mh_sim_logs_json_lines_from_its_environment_variable(tmp_path: Path) -> None:
    generate_key_files(tmp_path / "keys")
    process = start_darktower(
        [
            "mh-sim",
            "--key",
            str(tmp_path / "keys" / "mh.key"),
            "--gc",
            f"http://127.0.0.1:{free_port()}",  # nobody there: it logs its retries
            "--id",
            "mh-json",
        ],
        log_path=tmp_path / "mh.log",
        env={"MH_LOG_FORMAT": "json"},
    )
    try:
        wait_until(
            lambda: any(line["level"] == "WARNING" for line in log_lines(process.log())),
            timeout=40,
            what="a JSON warning line from mh-sim",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    lines = log_lines(process.log())
    assert lines and all(
        (line["service"], line["instance_id"]) == ("darktower-mh-sim", "mh-json") for line in lines
    )
    # Every line of the output is one of those objects (nothing in text format).
    assert len(lines) == len(process.log().splitlines())


@pytest.mark.parametrize(
    ("settings", "name"), [(GcSettings, "GC_LOG_FORMAT"), (McSettings, "MC_LOG_FORMAT")]
)
def test_the_log_format_is_documented_in_the_help(settings: type, name: str) -> None:
    [(_, default, description)] = [line for line in env_lines(settings) if line[0] == name]
    assert default == "text" and "json" in description
