"""`darktower mh` as a command: its settings in --help (README "Media"), and a start that cannot
work stops before any Janus is started (a bad setting: one line, exit 2, no secret echoed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from darktower.mh.server import MhApp
from darktower.mh.settings import MhSettings
from darktower.runtime.serving import StartupError
from tests.support.cli import invoke


def test_help_lists_the_mh_settings_and_no_secret_default() -> None:
    result = invoke("mh", "--help", columns=200)
    assert result.exit_code == 0
    for name in (
        "MH_ID",
        "MH_GC_ENDPOINT",
        "MH_SERVICE_KEY_FILE",
        "MH_TRUSTED_MC_KEY_FILES",
        "MH_JANUS_URL",
        "MH_JANUS_ADMIN_URL",
        "MH_JANUS_ADMIN_SECRET",
        "MH_JANUS_ROOM_ADMIN_KEY",
        "MH_JANUS_ICE_ENFORCE_LIST",
        "MH_JANUS_NAT_1_1_MAPPING",
        "MH_JANUS_RTP_PORT_RANGE",
    ):
        assert name in result.output, name


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        [str(bin_dir / "darktower"), "mh"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_trusted_mc_keys_stops_the_start(tmp_path: Path) -> None:
    settings = MhSettings(service_key_file=tmp_path / "mh.key")
    with pytest.raises(StartupError, match="MH_TRUSTED_MC_KEY_FILES is empty"):
        MhApp(settings)


def test_an_incomplete_attach_names_what_is_missing_without_echoing_the_secret(
    tmp_path: Path,
) -> None:
    done = _run(
        {
            "MH_JANUS_ADMIN_URL": "http://127.0.0.1:7088/admin",
            "MH_JANUS_ADMIN_SECRET": "attach-secret-7c1e",
        },
        tmp_path,
    )
    assert done.returncode == 2
    assert "MH_JANUS_URL" in done.stderr and "MH_JANUS_ROOM_ADMIN_KEY" in done.stderr
    assert "attach-secret-7c1e" not in done.stderr + done.stdout
