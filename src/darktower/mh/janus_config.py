"""The configuration `darktower mh` writes for a Janus it starts itself.

Everything goes into one private directory (mode 0700, files 0600): the secrets in it — the
admin API secret and the VideoRoom admin key — are generated per start and never leave this
machine. Janus loads only what a media handler needs: the VideoRoom plugin and the HTTP
(admin API) and WebSocket (clients) transports, through folders holding links to just those
libraries. Client requests need a stored token (`token_auth`) that the MH adds per participant;
the admin API listens on loopback only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "JANUS_LIBRARY_DIR",
    "JanusConfig",
    "render_config_files",
    "write_config",
]

JANUS_LIBRARY_DIR = Path("/usr/lib/x86_64-linux-gnu/janus")
_PLUGINS = ("libjanus_videoroom.so",)
_TRANSPORTS = ("libjanus_http.so", "libjanus_websockets.so")


@dataclass(frozen=True, slots=True)
class JanusConfig:
    """What varies between Janus instances. Secrets are plain strings here: this object only
    ever goes to `render_config_files` (its repr hides them)."""

    server_name: str
    ws_host: str
    ws_port: int
    admin_port: int
    admin_secret: str
    room_admin_key: str
    rtp_port_range: str = "20000-40000"
    ice_enforce_list: str = ""
    nat_1_1_mapping: str = ""
    stun_server: str = ""  # host:port; empty: none (Janus asks nobody for its address)
    debug_level: int = 4

    def __repr__(self) -> str:
        return (
            f"JanusConfig(server_name={self.server_name!r}, ws={self.ws_host}:{self.ws_port}, "
            f"admin_port={self.admin_port}, secrets=**********)"
        )


def _quote(value: str) -> str:
    """A libconfig string literal (JSON's escaping is a subset libconfig reads)."""
    return json.dumps(value)


def render_config_files(config: JanusConfig, folder: Path) -> dict[str, str]:
    """File name → content of every configuration file of a Janus rooted at `folder`."""
    nat = (
        [f"\tice_enforce_list = {_quote(config.ice_enforce_list)}"]
        if config.ice_enforce_list
        else []
    )
    if config.nat_1_1_mapping:
        nat.append(f"\tnat_1_1_mapping = {_quote(config.nat_1_1_mapping)}")
    if config.stun_server:
        host, _, port = config.stun_server.rpartition(":")
        nat.append(f"\tstun_server = {_quote(host)}")
        nat.append(f"\tstun_port = {int(port)}")
    janus = "\n".join(
        [
            "general: {",
            f"\tconfigs_folder = {_quote(str(folder))}",
            f"\tplugins_folder = {_quote(str(folder / 'plugins'))}",
            f"\ttransports_folder = {_quote(str(folder / 'transports'))}",
            f"\tevents_folder = {_quote(str(folder / 'none'))}",
            f"\tloggers_folder = {_quote(str(folder / 'none'))}",
            f"\tdebug_level = {config.debug_level}",
            f"\tserver_name = {_quote(config.server_name)}",
            f"\tadmin_secret = {_quote(config.admin_secret)}",
            "\ttoken_auth = true",
            "\tsession_timeout = 60",
            "\thide_dependencies = true",
            '\tprotected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", '
            '"/sbin", "/sys", "/usr", "/var"]',
            "}",
            "media: {",
            f"\trtp_port_range = {_quote(config.rtp_port_range)}",
            "}",
            "nat: {",
            *nat,
            "}",
            "plugins: {",
            "}",
            "transports: {",
            "}",
            "events: {",
            "}",
            "",
        ]
    )
    http = "\n".join(
        [
            "general: {",
            '\tjson = "compact"',
            "\thttp = false",
            "\thttps = false",
            "}",
            "admin: {",
            '\tadmin_base_path = "/admin"',
            "\tadmin_http = true",
            f"\tadmin_port = {config.admin_port}",
            '\tadmin_ip = "127.0.0.1"',
            "\tadmin_https = false",
            "}",
            "cors: {",
            "}",
            "",
        ]
    )
    websockets = "\n".join(
        [
            "general: {",
            '\tjson = "compact"',
            "\tws = true",
            f"\tws_port = {config.ws_port}",
            f"\tws_ip = {_quote(config.ws_host)}",
            "\twss = false",
            "}",
            "admin: {",
            "\tadmin_ws = false",
            "\tadmin_wss = false",
            "}",
            "",
        ]
    )
    videoroom = "\n".join(
        [
            "general: {",
            f"\tadmin_key = {_quote(config.room_admin_key)}",
            "\tlock_rtp_forward = true",
            "}",
            "",
        ]
    )
    return {
        "janus.jcfg": janus,
        "janus.transport.http.jcfg": http,
        "janus.transport.websockets.jcfg": websockets,
        "janus.plugin.videoroom.jcfg": videoroom,
    }


def write_config(
    config: JanusConfig, folder: Path, *, library_dir: Path = JANUS_LIBRARY_DIR
) -> Path:
    """Write the configuration into `folder` (created 0700) and return `janus.jcfg`'s path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for sub, names, source in (
        ("plugins", _PLUGINS, library_dir / "plugins"),
        ("transports", _TRANSPORTS, library_dir / "transports"),
        ("none", (), library_dir),
    ):
        target = folder / sub
        target.mkdir(mode=0o700, exist_ok=True)
        for name in names:
            link = target / name
            if not link.is_symlink():
                link.symlink_to(source / name)
    for name, content in render_config_files(config, folder).items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
    return folder / "janus.jcfg"
