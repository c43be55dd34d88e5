"""The pure parts of the MH: its load report from Janus's figures, the Janus configuration it
writes, the restart schedule."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from darktower.mh.janus_admin import LoadFigures, bytes_last_second
from darktower.mh.janus_config import JanusConfig, render_config_files, write_config
from darktower.mh.janus_process import restart_delay
from darktower.mh.load import load_report
from darktower.mh.settings import MhSettings
from darktower.wire.dark_tower import internal_pb2 as pb


def _figures(publishers: int, subscribers: int, bitrate_bps: int = 0) -> LoadFigures:
    return LoadFigures(
        sessions=publishers, publishers=publishers, subscribers=subscribers, rooms=1,
        bitrate_bps=bitrate_bps,
    )  # fmt: skip


MBIT = 1_000_000


@pytest.mark.parametrize(
    ("figures", "streams", "health", "bandwidth"),
    [
        (None, 0, pb.UNHEALTHY, 0.0),
        (_figures(0, 0), 0, pb.HEALTHY, 0.0),
        # The bandwidth share is the measured bitrate against 100 Mbit/s, not the stream share.
        (_figures(2, 2, 3 * MBIT), 4, pb.HEALTHY, 3.0),
        (_figures(40, 39, 79 * MBIT), 79, pb.HEALTHY, 79.0),
        (_figures(2, 2, 80 * MBIT), 4, pb.DEGRADED, 80.0),  # degraded by bandwidth alone
        (_figures(40, 40), 80, pb.DEGRADED, 0.0),  # by streams alone
        (_figures(400, 0, 900 * MBIT), 400, pb.DEGRADED, 100.0),
        (_figures(1, 0, -5), 1, pb.HEALTHY, 0.0),
    ],
)
def test_load_report(
    figures: LoadFigures | None, streams: int, health: int, bandwidth: float
) -> None:
    report = load_report(
        "mh-1",
        figures,
        max_streams=100,
        max_bitrate_bps=100 * MBIT,
        cpu_percent=150.0,
        memory_percent=-1.0,
    )
    assert report.handler_id == "mh-1"
    assert report.current_streams == streams
    assert report.health == health
    assert report.bandwidth_usage_percent == pytest.approx(bandwidth)
    if figures is not None:
        assert report.cpu_usage_percent == 100.0 and report.memory_usage_percent == 0.0


def test_bytes_last_second_sums_every_medium_in_and_out() -> None:
    """The shape of Janus 1.1's `handle_info` (as measured in tests/mh/test_media_load.py):
    stats per medium and direction; the DTLS totals and the plugin's part are not counted."""
    info = {
        "webrtc": {
            "dtls": {"stats": {"in": {"packets": 2, "bytes": 745}}},
            "media": {
                "0": {"type": "audio", "stats": {"in": {"bytes": 9000, "bytes_lastsec": 4000},
                                                 "out": {"bytes_lastsec": 10, "nacks": 0}}},
                "1": {"type": "video", "stats": {"in": {"bytes_lastsec": 50000,
                                                        "bytes_lastsec-sim1": 7000},
                                                 "out": {"bytes_lastsec": 0}}},
            },
        },
        "plugin_specific": {"bitrate": 0, "bytes_lastsec": 123456},
    }  # fmt: skip
    assert bytes_last_second(info) == 4000 + 10 + 50000 + 7000
    assert bytes_last_second({}) == 0
    odd = {"webrtc": {"media": [{"stats": {"in": {"bytes_lastsec": "9"}}}], "x": [-5, None]}}
    assert bytes_last_second(odd) == 0


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


def test_ice_settings_of_a_deployment_reach_the_nat_section(tmp_path: Path) -> None:
    """README "ICE in a real deployment": 1:1 NAT, the interface and a STUN server."""
    config = JanusConfig(
        server_name="mh-1", ws_host="0.0.0.0", ws_port=8188, admin_port=7088,
        admin_secret="s", room_admin_key="k", ice_enforce_list="eth0",
        nat_1_1_mapping="203.0.113.7", stun_server="stun.example.net:3478",
    )  # fmt: skip
    janus = render_config_files(config, tmp_path)["janus.jcfg"]
    nat = janus.split("nat: {", 1)[1].split("}", 1)[0]
    assert [line.strip() for line in nat.strip().splitlines()] == [
        'ice_enforce_list = "eth0"',
        'nat_1_1_mapping = "203.0.113.7"',
        'stun_server = "stun.example.net"',
        "stun_port = 3478",
    ]
    assert "stun_server" not in render_config_files(CONFIG, tmp_path)["janus.jcfg"]


@pytest.mark.parametrize(
    "value",
    ['stun.example.net:3478"\n\ttoken_auth = false', "stun.example.net", ":3478", "a b:1"],
)
def test_a_stun_server_that_is_not_host_port_is_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="janus_stun_server"):
        MhSettings(janus_stun_server=value)
    assert MhSettings(janus_stun_server="stun.example.net:3478").janus_stun_server


def test_the_mh_imports_no_other_service() -> None:
    from tests.common.test_boundaries import offences

    assert offences("mh", ("darktower.mc", "darktower.gc", "darktower.dev")) == []
