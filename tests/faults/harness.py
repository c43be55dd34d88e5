"""The fault-injection fleet: `tests.e2e.fleet.Fleet` plus the handles a fault needs.

What it adds to the end-to-end fleet:

* every MC reaches its GC through a `TcpProxy` of its own (`FaultMc.gc_link`), so any MC can be
  partitioned from the GC while it still reaches Redis; an MC may also advertise a second proxy
  in front of its own gRPC port (`FaultMc.inbound`), so that a partition cuts the GC's calls to
  it too;
* an MC can be started *held* (its GC link cut): it runs, but the GC does not know it until
  `release()` — that is how a test puts meetings on one chosen MC before the others join;
* `restart_mc` SIGKILLs an MC and starts it again with the same id, ports, proxies and settings;
  `start_gc_at` starts a GC on given ports (to restart it where the MCs look for it);
* the MCs run with `MC_REDIS_AUDIT=true` and short timings (`FAULT_MC_ENV`);
* readers for the outcome: a meeting's generation and owner in Redis, its audit stream, the
  invariants the audit must satisfy (`audit_violations`, pure), an MC's metrics, a direct
  AssignMeetingWithMh call signed with the GC key.

Every gRPC hop is TLS by default, as in `tests.e2e.fleet` (`FaultFleet(..., tls=False)`:
plaintext). The proxies are byte-transparent, so an MC dials `https://127.0.0.1:<proxy port>`
and verifies the GC's certificate (which names 127.0.0.1) through it, the GC an MC's the same.

Every wait is bounded and names what it waited for (`wait_until`); every process and proxy is
stopped by `FaultFleet.close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
import redis.asyncio as aioredis

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.fleet_keys import FleetKeys
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.embedded.redis import free_port
from darktower.fencing import AuditEntry, RedisFencedStore
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.e2e.fleet import (
    FAST_MC_ENV,
    HTTP_TIMEOUT_S,
    START_TIMEOUT_S,
    Fleet,
    GcProc,
    McProc,
    Proc,
    darktower_command,
    fresh_database,
    metric,
    wait_until,
)
from tests.faults.tcp_proxy import CutMode, TcpProxy

__all__ = [
    "FAULT_MC_ENV",
    "WRITE_OPS",
    "FaultFleet",
    "FaultMc",
    "McPlan",
    "assign_direct",
    "audit_logs",
    "audit_violations",
    "controllers_health",
    "generation",
    "join_until",
    "mc_metric",
    "owner",
    "ready_status",
    "redis_now_ms",
    "touched_since",
    "wait_until",
]

# Touch every 0.3 s (a takeover is noticed within that), register again fast, audit every write.
FAULT_MC_ENV = {
    **FAST_MC_ENV,
    "MC_MEETING_TOUCH_SECONDS": "0.3",
    "MC_REDIS_CHECK_SECONDS": "0.2",
    "MC_REGISTRATION_BACKOFF_BASE": "0.2",
    "MC_REGISTRATION_BACKOFF_CAP": "2",
    "MC_REDIS_AUDIT": "true",
    # Client signaling (WebSocket, binding tokens) is not under test here.
    "MC_CLIENT_ENABLED": "false",
}
WRITE_OPS = frozenset({"set", "hset", "delete"})
HOSTS_MH = "https://mh-direct.faults:4433"
TWO_ZONES = {"mh-a1": "zone-a", "mh-b1": "zone-b"}


def _port(endpoint: str) -> int:
    port = urlsplit(endpoint).port
    assert port is not None, endpoint
    return port


@dataclass(frozen=True)
class McPlan:
    """How `FaultFleet.bring_up` starts one MC: held (GC link cut until `release`), with an
    inbound proxy (so a partition cuts both ways), extra MC settings by lower-case name."""

    held: bool = False
    inbound: bool = False
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass
class FaultMc:
    """One MC of a fault fleet, with what it takes to partition or restart it."""

    mc_id: str
    grpc_port: int
    health_port: int
    gc_link: TcpProxy  # MC -> GC
    inbound: TcpProxy | None  # GC -> MC, when the MC advertises it
    settings: dict[str, str]
    redis_url: str
    restarts: int = 0
    proc: McProc = field(init=False)  # the current process; set by FaultFleet._launch

    @property
    def health_url(self) -> str:
        return self.proc.health_url

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def metrics(self) -> str:
        return self.proc.metrics()

    def cut(self, mode: CutMode = "reset") -> None:
        """Partition this MC from the GC, both ways when it has an inbound proxy."""
        self.gc_link.cut(mode)
        if self.inbound is not None:
            self.inbound.cut(mode)

    def heal(self) -> None:
        self.gc_link.heal()
        if self.inbound is not None:
            self.inbound.heal()

    @property
    def partitioned(self) -> bool:
        return self.gc_link.cut_now


@dataclass
class FaultFleet(Fleet):
    """A `Fleet` whose MCs sit behind proxies and can be restarted in place; see the module."""

    proxies: list[TcpProxy] = field(default_factory=list)
    faulty: dict[str, FaultMc] = field(default_factory=dict)
    # Processes stopped on purpose (a killed MC before its restart, a stopped GC): no longer
    # checked alive by `wait_fleet`, still killed by `close` and shown by `logs`.
    retired: list[Proc] = field(default_factory=list)
    # Closed after every process and proxy is stopped: Redis servers, databases, clients.
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # -- GC --------------------------------------------------------------------------------

    def start_gc_at(
        self,
        database_url: str,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        gc_id: str = "gc-1",
        wait: bool = True,
    ) -> GcProc:
        """`Fleet.start_gc` on the given ports (free ones when None: a restarted GC takes the
        ports its MCs and proxies already point at), letting guests join without a per-address
        limit; each start of `gc_id` has its own process name and log (`gc-1-0`, `gc-1-1`)."""
        return self.start_gc(
            database_url,
            gc_id=gc_id,
            wait=wait,
            grpc_port=grpc_port,
            http_port=http_port,
            name=f"{gc_id}-{sum(p.name.startswith(gc_id) for p in self.procs)}",
            GC_ALLOW_GUESTS="true",  # the fault scenarios join as guests
            # The storm's joins all come from 127.0.0.1: the per-address limit (a guard against
            # floods, tests/e2e/test_gc_under_abuse.py) would refuse them, not the faults.
            GC_JOIN_RATE_PER_IP="1000",
            GC_JOIN_BURST_PER_IP="10000",
        )

    # -- MCs -------------------------------------------------------------------------------

    def proxy_to(self, port: int) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", port).start()
        self.proxies.append(proxy)
        return proxy

    def proxy_url(self, proxy: TcpProxy) -> str:
        """The proxy as a gRPC endpoint of this fleet (`https://` with TLS on)."""
        return f"{self.grpc_scheme}://{proxy.address}"

    def start_fault_mc(
        self,
        gc_grpc_endpoint: str,
        mc_id: str,
        *,
        held: bool = False,
        inbound: bool = False,
        redis_url: str | None = None,
        **settings: str,
    ) -> FaultMc:
        """An MC whose GC link runs through a proxy (cut from the start when `held`), with
        `FAULT_MC_ENV` and extra MC settings by lower-case name (`max_meetings="5"`). Only
        the port of `gc_grpc_endpoint` counts (the proxy's scheme is the fleet's)."""
        grpc_port, health_port = free_port(), free_port()
        gc_link = self.proxy_to(_port(gc_grpc_endpoint))
        if held:
            gc_link.cut()
        mc = FaultMc(
            mc_id=mc_id,
            grpc_port=grpc_port,
            health_port=health_port,
            gc_link=gc_link,
            inbound=self.proxy_to(grpc_port) if inbound else None,
            settings=dict(settings),
            redis_url=redis_url or self.redis_url,
        )
        self._launch(mc)
        self.faulty[mc_id] = mc
        return mc

    def _launch(self, mc: FaultMc) -> None:
        values = {
            **FAULT_MC_ENV,
            "MC_ID": mc.mc_id,
            "MC_GRPC_BIND": f"127.0.0.1:{mc.grpc_port}",
            "MC_HEALTH_BIND": f"127.0.0.1:{mc.health_port}",
            "MC_REDIS_URL": mc.redis_url,
            "MC_GC_ENDPOINT": self.proxy_url(mc.gc_link),
            "MC_SERVICE_KEY_FILE": str(self._key("mc", mc.mc_id)),
            "MC_TRUSTED_GC_KEY_FILES": str(self.keys.trusted("gc")),
            **self.tls_env(mc.mc_id, "MC"),
        }
        if mc.inbound is not None:
            values["MC_GRPC_ADVERTISE"] = self.proxy_url(mc.inbound)
        values.update({f"MC_{k.upper()}": v for k, v in mc.settings.items()})
        name = mc.mc_id if mc.restarts == 0 else f"{mc.mc_id}-r{mc.restarts}"
        mc.proc = McProc(
            name,
            self._start(name, darktower_command("mc"), values),
            mc_id=mc.mc_id,
            grpc_endpoint=f"{self.grpc_scheme}://127.0.0.1:{mc.grpc_port}",
            health_url=f"http://127.0.0.1:{mc.health_port}",
            ca_file=self.ca_file,
        )
        self.procs.append(mc.proc)
        self.mcs[mc.mc_id] = mc.proc

    def restart_mc(self, mc_id: str) -> FaultMc:
        """SIGKILL the MC and start it again: same id, ports, proxies, settings. Not waited for."""
        mc = self.faulty[mc_id]
        mc.proc.kill()
        self.retire(mc.proc)
        mc.restarts += 1
        self._launch(mc)
        return mc

    def wait_live(self, mcs: Iterable[FaultMc], *, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until every MC's health server answers (imports done, servers up)."""
        pending = list(mcs)

        def live() -> bool:
            for mc in pending:
                mc.proc.check_running()
            return all(ready_status(mc)[0] is not None for mc in pending)

        wait_until(live, timeout=timeout, what=f"MCs {[m.mc_id for m in pending]} live")

    def release(self, gc: GcProc, mc: FaultMc, *, timeout: float = START_TIMEOUT_S) -> float:
        """Heal a held MC's GC link; return the seconds until the GC sees it healthy."""
        mc.heal()
        return gc.wait_controllers({mc.mc_id: "healthy"}, timeout=timeout)

    # -- a whole fleet ---------------------------------------------------------------------

    def bring_up(
        self,
        database_url: str,
        mcs: Mapping[str, McPlan],
        *,
        mhs: Mapping[str, str] = TWO_ZONES,
        redis_url: str | None = None,
    ) -> tuple[GcProc, dict[str, FaultMc]]:
        """A GC, the MCs `mcs` and the MHs `mhs`, all started at once. Returns when the GC is
        ready, every MH reporting, every MC not held healthy at the GC and every held MC's
        health server answering (so a later `release` measures registration, not imports)."""
        self.add_keys(mcs=mcs, mhs=mhs)
        gc = self.start_gc_at(database_url, wait=False)
        started = {
            mc_id: self.start_fault_mc(
                gc.grpc_endpoint,
                mc_id,
                held=plan.held,
                inbound=plan.inbound,
                redis_url=redis_url,
                **plan.settings,
            )
            for mc_id, plan in mcs.items()
        }
        self.start_mh_group(gc, mhs)
        gc.wait_ready()
        self.wait_fleet(gc, mcs=[m for m, plan in mcs.items() if not plan.held], mhs=mhs)
        self.wait_live(started.values())
        return gc, started

    def __enter__(self) -> FaultFleet:
        return self

    def retire(self, proc: Proc) -> None:
        """`proc` was stopped on purpose: `wait_fleet` no longer requires it to run."""
        if proc in self.procs:
            self.procs.remove(proc)
            self.retired.append(proc)

    def logs(self, tail: int = 40) -> str:
        live, self.procs = self.procs, [*self.retired, *self.procs]
        try:
            return super().logs(tail)
        finally:
            self.procs = live

    def empty_database(self, tmp_dir: Path) -> str:
        """The URL of another empty database (SQLite file or PostgreSQL schema), dropped when
        the fleet closes."""
        return self.stack.enter_context(fresh_database(tmp_dir))

    def close(self) -> None:
        try:
            super().close()
            for proc in self.retired:
                proc.kill()
                if isinstance(proc, GcProc):
                    proc.client.close()
            for proxy in self.proxies:
                proxy.close()
        finally:
            self.stack.close()


# -- readers ------------------------------------------------------------------------------


def generation(r: redis.Redis, meeting_id: str) -> int | None:
    value = r.get(f"meeting:{{{meeting_id}}}:gen")
    return None if value is None else int(value)


def owner(r: redis.Redis, meeting_id: str) -> str | None:
    value = r.get(f"meeting:{{{meeting_id}}}:owner")
    return None if value is None else str(value)


def audit_logs(redis_url: str, meeting_ids: Iterable[str]) -> dict[str, list[AuditEntry]]:
    """Every meeting's audit stream, read through the fencing store's own reader."""
    ids = list(meeting_ids)

    async def read() -> dict[str, list[AuditEntry]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = RedisFencedStore(client, audit=True)
            return {m: await store.audit_log(m) for m in ids}
        finally:
            await client.aclose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=60)


def redis_now_ms(r: redis.Redis) -> int:
    """The Redis server's clock in ms: what audit entries are stamped with."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def touched_since(
    redis_url: str, owners: Mapping[str, str], since_ms: int, *, times: int = 1
) -> bool:
    """Whether every meeting of `owners` has at least `times` touches (audited `hset`s) by its
    owner appended at or after `since_ms` (Redis time): the owner really hosts it."""
    logs = audit_logs(redis_url, owners)
    return all(
        sum(
            1
            for e in logs[m]
            if e.op == "hset" and e.owner == who and int(e.entry_id.split("-", 1)[0]) >= since_ms
        )
        >= times
        for m, who in owners.items()
    )


def audit_violations(meeting_id: str, entries: Iterable[AuditEntry]) -> list[str]:
    """What breaks the fencing invariants in one meeting's audit stream (empty: none).

    * generations never decrease along the stream;
    * each generation has exactly one owner;
    * an acquire issues a generation strictly above every one before it;
    * every write ('set', 'hset', 'delete') carries the generation of the latest acquire and
      that acquire's owner — none below an earlier acquire, none by anyone else.
    """
    problems: list[str] = []
    owners: dict[int, str] = {}
    highest = 0
    current: AuditEntry | None = None
    for e in entries:
        where = f"{meeting_id} {e.entry_id} {e.op} gen={e.generation} owner={e.owner}"
        if e.generation < highest:
            problems.append(f"{where}: generation went down from {highest}")
        if owners.setdefault(e.generation, e.owner) != e.owner:
            problems.append(f"{where}: generation already owned by {owners[e.generation]}")
        if e.op == "acquire":
            if e.generation <= highest:
                problems.append(f"{where}: acquire not above {highest}")
            current = e
        elif e.op in WRITE_OPS:
            if current is None:
                problems.append(f"{where}: write before any acquire")
            elif (e.generation, e.owner) != (current.generation, current.owner):
                problems.append(
                    f"{where}: write after the acquire of gen={current.generation} "
                    f"by {current.owner}"
                )
        else:
            problems.append(f"{where}: unknown op")
        highest = max(highest, e.generation)
    return problems


def mc_metric(mc: FaultMc, name: str, **labels: str) -> float:
    """A sample of the MC's /metrics (0 when absent, as for a counter never incremented)."""
    return metric(mc.metrics(), name, **labels) or 0.0


def ready_status(mc: FaultMc) -> tuple[int | None, dict[str, Any]]:
    """The MC's /health/ready: (status, body); (None, {}) while nothing answers."""
    try:
        response = httpx.get(f"{mc.health_url}/health/ready", timeout=HTTP_TIMEOUT_S)
    except httpx.TransportError:
        return None, {}
    body: dict[str, Any] = response.json()
    return response.status_code, body


def join_until(
    gc: GcProc,
    meeting_id: str,
    *,
    timeout: float,
    accept: Callable[[dict[str, Any]], bool] = lambda body: True,
) -> tuple[dict[str, Any], float, list[str]]:
    """Join `meeting_id` every 100 ms until a 200 answer satisfies `accept`; return that
    answer, the seconds it took, and what the answers before it were (status/reason or MC)."""
    started = time.monotonic()
    seen: list[str] = []
    while True:
        response = gc.join(meeting_id)
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            if accept(body):
                return body, time.monotonic() - started, seen
            seen.append(f"200:{body['mc_id']}")
        else:
            seen.append(f"{response.status_code}:{response.json().get('reason')}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no acceptable join of {meeting_id} in {timeout}s: {seen}")
        time.sleep(0.1)


def assign_direct(
    keys: FleetKeys, mc: FaultMc, meeting_id: str, *, timeout: float = 10.0
) -> tuple[bool, str]:
    """AssignMeetingWithMh straight to the MC (not through the GC), signed with gc-1's key and
    for that MC: (accepted, rejection reason name)."""
    service_type, scope = SERVICE_PROFILES["gc"]
    tokens = ServiceTokenProvider(
        load_private_key(keys.key("gc", "gc-1")),
        service_type=service_type,
        scope=scope,
        issuer="gc-1",
        audience=mc.mc_id,
    )
    request = pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id="mh-direct", webtransport_endpoint=HOSTS_MH, role=pb.MH_ROLE_PRIMARY
            )
        ],
        requesting_gc_id="gc-1",
    )
    with mc.proc.channel() as channel:  # straight to its port, TLS when the fleet's is on
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        answer = stub.AssignMeetingWithMh(request, metadata=tokens.metadata(), timeout=timeout)
    return answer.accepted, pb.RejectionReason.Name(answer.rejection_reason)


def controllers_health(gc: GcProc) -> Mapping[str, str]:
    return {mc_id: c["health"] for mc_id, c in gc.controllers().items()}
