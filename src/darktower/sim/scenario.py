"""Scenario files for the fleet simulator: TOML, checked field by field.

A scenario names the fleet (zones, MCs and MHs per zone, GC processes, Redis shards, limits),
the heartbeat settings, the load (concurrent meetings at the peak, an arrival curve over the
day, meeting sizes and durations), the network, the cost model's source and a list of failures.
`load_scenario` reads a file and returns a `Scenario`; anything wrong — an unknown key, a wrong
type, a negative size, a number past its bound — raises `ScenarioError` whose message is one
line naming the field (``fleet.mcs_per_zone: must be at most 1000000, got 10000000000``).

Every field, its default and its bounds are in the dataclasses below; docs/capacity.md shows
the format with the shipped scenarios of `scenarios/`.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Burst",
    "Costs",
    "Failure",
    "Fleet",
    "Heartbeat",
    "Load",
    "Network",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
]

MAX_FILE_BYTES = 1_000_000
FAILURE_KINDS = ("zone_loss", "mc_crashes", "mc_kill", "gc_restart", "redis_failover")

DEFAULT_CURVE = (
    (0.0, 0.03),
    (6.0, 0.05),
    (8.0, 0.6),
    (10.0, 1.0),
    (12.0, 0.75),
    (14.0, 1.0),
    (16.0, 0.85),
    (18.0, 0.35),
    (21.0, 0.1),
    (24.0, 0.03),
)
"""A business day: fraction of the peak concurrent meetings by hour of day (linear between)."""


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one line naming the field."""


def _bound(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Any:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def _f(default: Any, lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    meta = _bound(lo, hi, lo_open=kw.pop("lo_open", False))
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Fleet:
    """What runs in the region. Placement is per region; zones are failure domains."""

    region: str = "region-1"
    zones: int = _f(3, 1, 64)
    mcs_per_zone: int = _f(3, 1, 1_000_000)
    mhs_per_zone: int = _f(4, 1, 100_000)
    gc_processes: int = _f(1, 1, 10_000)
    redis_shards: int = _f(1, 1, 1_000)
    mc_max_meetings: int = _f(1000, 1, 10_000_000)
    mc_max_participants: int = _f(10_000, 1, 100_000_000)
    mh_max_streams: int = _f(100_000, 1, 100_000_000)
    participant_estimate: int = _f(10, 0, 1_000_000)
    placement_attempts: int = _f(3, 1, 16)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The GC's intervals and staleness rules (docs/reference.md defaults)."""

    fast_s: float = _f(10.0, 0, 3600, lo_open=True)
    comprehensive_s: float = _f(30.0, 0, 3600, lo_open=True)
    staleness_s: float = _f(30.0, 0, 3600, lo_open=True)
    sweep_s: float = _f(5.0, 0, 3600, lo_open=True)
    touch_s: float = _f(5.0, 0, 3600, lo_open=True)
    mh_report_s: float = _f(10.0, 0, 3600, lo_open=True)
    register_base_s: float = _f(1.0, 0, 3600, lo_open=True)
    register_cap_s: float = _f(30.0, 0, 86400, lo_open=True)


@dataclass(frozen=True, slots=True)
class Load:
    """Meetings: how many at the peak, when, how big, how long; how clients retry."""

    peak_meetings: int = _f(100, 0, 10_000_000)
    curve: tuple[tuple[float, float], ...] = _f(lambda: DEFAULT_CURVE)
    start_hour: float = _f(0.0, 0, 24)
    prefill: bool = True
    mean_duration_s: float = _f(2400.0, 1, 7 * 86400)
    sizes: tuple[int, ...] = _f(lambda: (2, 3, 5, 8, 15, 40))
    size_weights: tuple[float, ...] = _f(lambda: (30.0, 20.0, 20.0, 15.0, 10.0, 5.0))
    retry_s: float = _f(1.0, 0, 3600, lo_open=True)
    retry_backoff: bool = False
    evidence: bool = False
    probe_s: float = _f(1.0, 0, 60)
    retry_cap_s: float = _f(30.0, 0, 86400, lo_open=True)
    give_up_s: float = _f(120.0, 0, 86400)
    detect_s: float = _f(1.0, 0, 3600)


@dataclass(frozen=True, slots=True)
class Burst:
    """A closed-loop burst of distinct joins (the herding benchmark's load)."""

    joins: int = _f(0, 0, 10_000_000)
    in_flight: int = _f(1, 1, 100_000)
    at_s: float = _f(1.0, 0, 30 * 86400)
    meeting_size: int = _f(1, 1, 100_000)


@dataclass(frozen=True, slots=True)
class Network:
    """One-way latencies (ms) and the GC's call timeout towards an MC that does not answer."""

    client_gc_ms: float = _f(20.0, 0, 10_000)
    same_zone_ms: float = _f(0.25, 0, 10_000)
    cross_zone_ms: float = _f(1.0, 0, 10_000)
    mc_call_timeout_s: float = _f(10.0, 0, 3600)
    register_timeout_s: float = _f(10.0, 0.001, 3600)


@dataclass(frozen=True, slots=True)
class Costs:
    """Where per-operation costs come from: `results_dir` (bench JSON) unless set here (s)."""

    results_dir: str = "bench/results"
    join_new_s: float | None = _f(None, 0, 60)
    join_reuse_s: float | None = _f(None, 0, 60)
    heartbeat_s: float | None = _f(None, 0, 60)
    register_s: float | None = _f(None, 0, 60)
    gc_idle_cores: float | None = _f(None, 0, 64)
    mc_assign_s: float | None = _f(None, 0, 60)
    redis_shard_ops_s: float | None = _f(None, 1, 100_000_000)


@dataclass(frozen=True, slots=True)
class Failure:
    """One failure: `kind` is one of FAILURE_KINDS; the other fields apply to some kinds.

    zone_loss: zone `zone` (0-based) lost at `at_s` (its MCs and MHs stop; calls to them
    time out). mc_crashes: each MC crashes `per_mc_per_day` times a day (connection refused)
    and comes back empty after `restart_s`. mc_kill: MC number `mc` (0-based) killed at
    `at_s`, not restarted. gc_restart: every GC process down from `at_s` for `down_s`,
    back with an empty database; `jitter` on the MCs' registration backoff; `mcs_restart`:
    the MCs start again at `at_s` too (a cold start of the region). redis_failover: shard
    `shard` fails over at `at_s`, unavailable for `duration_s`.
    """

    kind: str
    at_s: float = _f(0.0, 0, 30 * 86400)
    zone: int = _f(0, 0, 63)
    mc: int = _f(0, 0, 100_000_000)
    per_mc_per_day: float = _f(0.0, 0, 10_000)
    restart_s: float = _f(60.0, 0, 86400)
    down_s: float = _f(10.0, 0, 86400)
    jitter: bool = True
    mcs_restart: bool = False
    shard: int = _f(0, 0, 999)
    duration_s: float = _f(2.4, 0, 86400)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario file."""

    name: str
    description: str = ""
    seed: int = _f(1, 0, 2**63 - 1)
    duration_s: float = _f(86400.0, 0.001, 30 * 86400, lo_open=True)
    sample_s: float = _f(60.0, 0, 86400, lo_open=True)
    fleet: Fleet = field(default_factory=Fleet)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    load: Load = field(default_factory=Load)
    burst: Burst = field(default_factory=Burst)
    network: Network = field(default_factory=Network)
    costs: Costs = field(default_factory=Costs)
    failures: tuple[Failure, ...] = ()

    @property
    def mcs(self) -> int:
        return self.fleet.zones * self.fleet.mcs_per_zone


T = TypeVar("T")
_SECTIONS: dict[str, type] = {
    "fleet": Fleet,
    "heartbeat": Heartbeat,
    "load": Load,
    "burst": Burst,
    "network": Network,
    "costs": Costs,
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{where}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{where}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{where}: must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ScenarioError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{where}: must be a string, got {value!r}")
        if len(value) > 1000:
            raise ScenarioError(f"{where}: must be at most 1000 characters")
        return value
    raise ScenarioError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, members[0], where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ScenarioError(f"{where}: must be a list, got {value!r}")
        if len(value) > 10_000:
            raise ScenarioError(f"{where}: must have at most 10000 entries")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ScenarioError(f"{where}: must have {len(args)} entries, got {len(value)}")
        return tuple(
            _convert(v, a, f"{where}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if tp in _SECTIONS.values() or tp is Failure:
        if not isinstance(value, dict):
            raise ScenarioError(f"{where}: must be a table, got {value!r}")
        return _build(tp, value, where)
    return _scalar(value, tp, where)


def _check_bounds(value: Any, meta: Any, where: str) -> None:
    if not meta or value is None or isinstance(value, bool | str | tuple):
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    if meta.get("lo_open"):
        if value <= 0:
            raise ScenarioError(f"{where}: must be positive, got {value!r}")
    elif lo is not None and value < lo:
        raise ScenarioError(f"{where}: must be at least {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise ScenarioError(f"{where}: must be at most {hi:g}, got {value!r}")


def _build(cls: type[T], table: dict[str, Any], prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else key
            raise ScenarioError(f"{where}: unknown key")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        where = f"{prefix}.{name}" if prefix else name
        if name not in table:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ScenarioError(f"{where}: required")
            continue
        value = _convert(table[name], hints[name], where)
        _check_bounds(value, spec.metadata, where)
        values[name] = value
    return cls(**values)


def _check_scenario(s: Scenario) -> None:
    load = s.load
    if len(load.sizes) == 0:
        raise ScenarioError("load.sizes: must not be empty")
    if len(load.sizes) != len(load.size_weights):
        raise ScenarioError("load.size_weights: must have one weight per entry of load.sizes")
    for i, size in enumerate(load.sizes):
        if not 1 <= size <= 100_000:
            raise ScenarioError(f"load.sizes[{i}]: must be between 1 and 100000, got {size}")
    for i, w in enumerate(load.size_weights):
        if w < 0:
            raise ScenarioError(f"load.size_weights[{i}]: must not be negative, got {w}")
    if sum(load.size_weights) <= 0:
        raise ScenarioError("load.size_weights: must not all be zero")
    if len(load.curve) < 2:
        raise ScenarioError("load.curve: needs at least two [hour, fraction] points")
    hours = [h for h, _ in load.curve]
    for i, (hour, frac) in enumerate(load.curve):
        if not 0 <= hour <= 24:
            raise ScenarioError(f"load.curve[{i}]: hour must be between 0 and 24, got {hour}")
        if not 0 <= frac <= 1:
            raise ScenarioError(f"load.curve[{i}]: fraction must be between 0 and 1, got {frac}")
    if hours != sorted(hours) or hours[0] != 0 or hours[-1] != 24:
        raise ScenarioError("load.curve: hours must rise from 0 to 24")
    if s.mcs > 1_000_000:
        raise ScenarioError(f"fleet.mcs_per_zone: at most 1000000 MCs in all, got {s.mcs}")
    if s.fleet.zones * s.fleet.mhs_per_zone > 100_000:
        raise ScenarioError("fleet.mhs_per_zone: at most 100000 MHs in all")
    if s.duration_s / s.sample_s > 100_000:
        raise ScenarioError("sample_s: at most 100000 samples per run")
    for i, f in enumerate(s.failures):
        where = f"failures[{i}]"
        if f.kind not in FAILURE_KINDS:
            raise ScenarioError(f"{where}.kind: must be one of {', '.join(FAILURE_KINDS)}")
        if f.kind == "zone_loss" and f.zone >= s.fleet.zones:
            raise ScenarioError(f"{where}.zone: the fleet has {s.fleet.zones} zones (0-based)")
        if f.kind == "mc_kill" and f.mc >= s.mcs:
            raise ScenarioError(f"{where}.mc: the fleet has {s.mcs} MCs (0-based)")
        if f.kind == "redis_failover" and f.shard >= s.fleet.redis_shards:
            raise ScenarioError(
                f"{where}.shard: the fleet has {s.fleet.redis_shards} shards (0-based)"
            )


def parse_scenario(table: dict[str, Any]) -> Scenario:
    """A `Scenario` from a parsed TOML table; `ScenarioError` naming the field if invalid."""
    failures = table.get("failures", [])
    if not isinstance(failures, list):
        raise ScenarioError(f"failures: must be an array of tables, got {failures!r}")
    if len(failures) > 1000:
        raise ScenarioError("failures: at most 1000 entries")
    rest = {k: v for k, v in table.items() if k != "failures"}
    scenario = _build(Scenario, rest, "")
    parsed = tuple(_convert(f, Failure, f"failures[{i}]") for i, f in enumerate(failures))
    scenario = Scenario(
        **{f.name: getattr(scenario, f.name) for f in fields(Scenario) if f.name != "failures"},
        failures=parsed,
    )
    _check_scenario(scenario)
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; `ScenarioError` (one line, naming the field) if not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    return parse_scenario(table)
