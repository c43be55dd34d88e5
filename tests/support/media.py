"""Real media handlers (`MhApp`, each with its own Janus) for tests, beside a fleet's GC."""

from __future__ import annotations

from pathlib import Path

from darktower.embedded.redis import free_port
from darktower.mh.settings import MhSettings

__all__ = ["mh_settings"]


def mh_settings(
    key_dir: Path,
    gc_grpc: str,
    mh_id: str,
    work_dir: Path,
    *,
    zone: str = "zone-a",
    ice_interface: str = "lo",
) -> MhSettings:
    """An MH `mh_id` on free loopback ports, signing with `key_dir/mh/<mh_id>.key`, trusting
    the MCs of `key_dir/mc`, its Janus gathering ICE candidates on `ice_interface` only."""
    return MhSettings(
        id=mh_id,
        region="test",
        zone=zone,
        gc_endpoint=gc_grpc,
        grpc_bind=f"127.0.0.1:{free_port()}",
        health_bind=f"127.0.0.1:{free_port()}",
        service_key_file=key_dir / "mh" / f"{mh_id}.key",
        trusted_mc_key_files=[key_dir / "mc"],
        janus_dir=work_dir / f"janus-{mh_id}",
        janus_ws_bind=f"127.0.0.1:{free_port()}",
        janus_rtp_port_range="41000-49999",
        janus_ice_enforce_list=ice_interface,
        max_streams=100,
    )
