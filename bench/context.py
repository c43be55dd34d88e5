"""What one run of the suite shares (`BenchContext`): mode, directories, the services' key
files, and how a benchmark starts a service process in it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.hosting import Host

__all__ = ["REGION", "REPO_ROOT", "BenchContext"]

REGION = "bench"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BenchContext:
    """What one run of the suite shares: mode, directories, the key files of the services."""

    smoke: bool
    uvloop: bool
    results_dir: Path
    workdir: Path
    profile_dir: Path | None = None

    @property
    def keys(self) -> Path:
        return self.workdir / "keys"

    @property
    def judge(self) -> bool:
        return not self.smoke

    def pick(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full

    def host(self, name: str, factory: str, params: Mapping[str, Any] | None = None) -> Host:
        """A service process started from `factory` ("module:function"), logging to workdir."""
        full = {"keys": str(self.keys), "workdir": str(self.workdir), **(params or {})}
        return Host(name, factory, full, uvloop=self.uvloop, log_file=self.workdir / f"{name}.log")
