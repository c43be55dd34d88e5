"""One key pair per instance for a whole fleet, laid out so that peers trust directories.

`generate_fleet_keys(ROOT, gcs=["gc-1"], mcs=["mc-1", "mc-2"], mhs=["mh-1"])` writes
`ROOT/<service>/<id>.key` and `.pub`, each bound to its (service, id) (`darktower.auth.keys`).
A receiver trusts a service's directory (`ROOT/mc` for `GC_TRUSTED_MC_KEY_FILES`, `ROOT/gc`
for `MC_TRUSTED_GC_KEY_FILES`): every instance of that service, each only as itself. No key is
shared, so no instance can act for another. Used by `darktower dev`, the test fleets and the
bench.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from darktower.auth.keys import generate_instance_key_files

__all__ = ["FleetKeys", "generate_fleet_keys"]


@dataclass(frozen=True)
class FleetKeys:
    """Where the key files of a fleet are: `root/<service>/<id>.{key,pub}`."""

    root: Path

    def key(self, service: str, instance_id: str) -> Path:
        """The private key of one instance (its `*_SERVICE_KEY_FILE`)."""
        return self.root / service / f"{instance_id}.key"

    def public(self, service: str, instance_id: str) -> Path:
        return self.root / service / f"{instance_id}.pub"

    def trusted(self, service: str) -> Path:
        """The directory of every public key of `service` (a `*_TRUSTED_*_KEY_FILES` value)."""
        return self.root / service

    def add(self, service: str, instance_id: str) -> Path:
        """Generate the key pair of one more instance unless it exists; its private key."""
        if not self.key(service, instance_id).exists():
            generate_instance_key_files(
                self.root / service, service=service, instance_id=instance_id
            )
        return self.key(service, instance_id)


def generate_fleet_keys(
    root: Path,
    *,
    gcs: Iterable[str] = ("gc-1",),
    mcs: Iterable[str] = (),
    mhs: Iterable[str] = (),
) -> FleetKeys:
    """Write a bound key pair per instance under `root` (kept when already there)."""
    keys = FleetKeys(root)
    for service, ids in (("gc", gcs), ("mc", mcs), ("mh", mhs)):
        for instance_id in ids:
            keys.add(service, instance_id)
    return keys
