"""The pure parts of the MH: its load report from Janus's figures, the Janus configuration it
writes, the restart schedule."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from darktower.mh.janus_admin import LoadFigures
from darktower.mh.janus_config import JanusConfig, render_config_files, write_config
from darktower.mh.janus_process import restart_delay
from darktower.mh.load import load_report
from darktower.wire.dark_tower import internal_pb2 as pb


@pytest.mark.parametrize(
    ("figures", "max_streams", "streams", "health", "bandwidth"),
    [
        (None, 100, 0, pb.UNHEALTHY, 0.0),
        (LoadFigures(sessions=0, publishers=0, subscribers=0, rooms=0), 100, 0, pb.HEALTHY, 0.0),
        (LoadFigures(sessions=2, publishers=2, subscribers=2, rooms=1), 100, 4, pb.HEALTHY, 4.0),
        (
            LoadFigures(sessions=9, publishers=40, subscribers=39, rooms=3),
            100,
            79,
            pb.HEALTHY,
            79.0,
        ),
        (
            LoadFigures(sessions=9, publishers=40, subscribers=40, rooms=3),
            100,
            80,
            pb.DEGRADED,
            80.0,
        ),
        (
            LoadFigures(sessions=9, publishers=400, subscribers=0, rooms=3),
            100,
            400,
            pb.DEGRADED,
            100.0,
        ),
    ],
)
def test_load_report(
    figures: LoadFigures | None,
    max_streams: int,
    streams: int,
    health: int,
    bandwidth: float,
) -> None:
    report = load_report(
        "mh-1", figures, max_streams=max_streams, cpu_percent=150.0, memory_percent=-1.0
    )
    assert report.handler_id == "mh-1"
    assert report.current_streams == streams
    assert report.health == health
    assert report.bandwidth_usage_percent == pytest.approx(bandwidth)
    if figures is not None:
        assert report.cpu_usage_percent == 100.0 and report.memory_usage_percent == 0.0


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (60, 10.0)]
)
def test_restart_delay(failures: int, delay: float) -> None:
    assert restart_delay(failures) == delay


CONFIG = JanusConfig(
    server_name="mh-1",
    ws_host="127.0.0.1",
    ws_port=18188,
    admin_port=17088,
    admin_secret="admin-secret-value",
    room_admin_key="room-key-value",
    ice_enforce_list="lo",
)


def test_the_config_loads_only_what_a_media_handler_needs(tmp_path: Path) -> None:
    files = render_config_files(CONFIG, tmp_path)
    janus = files["janus.jcfg"]
    assert "token_auth = true" in janus
    assert 'ice_enforce_list = "lo"' in janus
    assert 'admin_secret = "admin-secret-value"' in janus
    http = files["janus.transport.http.jcfg"]
    assert "http = false" in http  # the plain client API over HTTP is off ...
    assert 'admin_ip = "127.0.0.1"' in http  # ... the admin API is on loopback only
    assert 'admin_key = "room-key-value"' in files["janus.plugin.videoroom.jcfg"]
    assert "admin_ws = false" in files["janus.transport.websockets.jcfg"]


def test_the_config_directory_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "janus"
    write_config(CONFIG, folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in render_config_files(CONFIG, folder):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in (folder / "plugins").iterdir()) == ["libjanus_videoroom.so"]
    assert sorted(p.name for p in (folder / "transports").iterdir()) == [
        "libjanus_http.so",
        "libjanus_websockets.so",
    ]
    write_config(CONFIG, folder)  # a restart rewrites it in place


def test_the_config_repr_hides_the_secrets() -> None:
    shown = repr(CONFIG)
    assert "admin-secret-value" not in shown and "room-key-value" not in shown


def test_quotes_in_values_cannot_add_settings(tmp_path: Path) -> None:
    sneaky = JanusConfig(
        server_name='x"\n\ttoken_auth = false\n#',
        ws_host="127.0.0.1",
        ws_port=1,
        admin_port=2,
        admin_secret="s",
        room_admin_key="k",
    )
    janus = render_config_files(sneaky, tmp_path)["janus.jcfg"]
    lines = [line.strip() for line in janus.splitlines()]
    assert "token_auth = false" not in lines and "token_auth = true" in lines


def test_the_mh_imports_no_other_service() -> None:
    from tests.common.test_boundaries import offences

    assert offences("mh", ("darktower.mc", "darktower.gc", "darktower.dev")) == []
