"""One factory for the asyncio Redis client, whatever the deployment: standalone, Sentinel, Cluster.

URL forms (the password may be percent-encoded; a `user:password@` pair is accepted too):

    redis://[[user]:password@]host:port[/db]        standalone (redis-py `Redis.from_url`,
    rediss://[[user]:password@]host:port[/db]       every option of its URL syntax included)

    redis+sentinel://[[user]:password@]host1:26379,host2:26379,host3:26379/<service>[/db]
        Sentinel: the client asks the sentinels for the master of `<service>` before each new
        connection and again after a connection error or a READONLY reply, so it follows a
        failover. The credentials are the data nodes'; the sentinels are reached without
        authentication. Port defaults to 26379.

    redis+cluster://[[user]:password@]host1:6379,host2:6379[/]
        Redis Cluster: any reachable node bootstraps the slot map; db must be 0 (or absent).
        Port defaults to 6379. A failed command is retried 3 times (50 ms backoff doubling
        up to 500 ms) after a slot map refresh, then raised.

Connections are bounded: the standalone and Sentinel clients use a blocking pool of at most
`max_connections` (a burst of commands queues for a free connection for up to `pool_timeout`
seconds, then fails with a ConnectionError) instead of opening one connection per concurrent
command; the Cluster client keeps at most `max_connections` per node.

`connect()` builds the client (no I/O until the first command); `describe()` gives a text for
logs without credentials: the host:port list, plus the service name for Sentinel. A malformed
URL raises `RedisUrlError`, whose message names what is wrong but never the URL or password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

__all__ = ["RedisLike", "RedisUrlError", "connect", "describe"]

RedisLike: TypeAlias = aioredis.Redis | RedisCluster
"""What `connect` returns: a plain (possibly Sentinel-managed) client or a cluster client."""

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
_PLAIN_SCHEMES = ("redis", "rediss")
# The cluster client retries a failed command after refreshing its slot map (that is how it
# follows a replica promotion or a MOVED slot). redis-py's default backoff (1 s base, 10 s
# cap) would hold a call for seconds; an outage should surface as fast as the socket timeout.
CLUSTER_RETRY_BASE = 0.05
CLUSTER_RETRY_CAP = 0.5
_DEFAULT_PORTS = {SENTINEL_SCHEME: 26379, CLUSTER_SCHEME: 6379}
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,255}")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")
# Enough for an MC's concurrent admissions and touches; a burst beyond it waits for a connection
# rather than opening hundreds (each one a connect that may pass the socket timeout under load).
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_POOL_TIMEOUT = 5.0


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message never contains the URL or credentials."""


@dataclass(frozen=True)
class _Parsed:
    scheme: str
    hosts: list[tuple[str, int]]
    username: str | None
    password: str | None
    service: str | None
    db: int

    def describe(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.scheme == SENTINEL_SCHEME:
            return f"sentinel {hosts} service {self.service} db {self.db}"
        if self.scheme == CLUSTER_SCHEME:
            return f"cluster {hosts}"
        return f"{self.scheme} {hosts} db {self.db}"


def connect(
    url: str,
    *,
    socket_timeout: float = 2.0,
    connect_timeout: float = 2.0,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> RedisLike:
    """The asyncio client for `url` (forms in the module docstring); raises RedisUrlError.

    The caller owns the client and closes it with `aclose()`; for Sentinel that also closes
    the connections to the sentinels.
    """
    if max_connections < 1 or pool_timeout <= 0:
        raise ValueError("max_connections must be >= 1 and pool_timeout > 0")
    parsed = _parse(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if parsed.scheme in _PLAIN_SCHEMES:
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                retry_on_timeout=False,
                **timeouts,
            )
        except ValueError:
            # redis-py's message may quote a piece of the URL, password included.
            raise RedisUrlError(f"malformed {parsed.scheme}:// URL") from None
        return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool
    if parsed.scheme == SENTINEL_SCHEME:
        assert parsed.service is not None
        # redis-py's Sentinel has no type hints.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            parsed.hosts,
            sentinel_kwargs=dict(timeouts),  # the sentinels: no credentials, same timeouts
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            retry_on_timeout=False,
            **timeouts,
        )
        master: _SentinelMaster = sentinel.master_for(
            parsed.service,
            redis_class=_SentinelMaster,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=max_connections,
            timeout=pool_timeout,
        )
        return master
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
        username=parsed.username,
        password=parsed.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=max_connections,
        retry=Retry(ExponentialBackoff(cap=CLUSTER_RETRY_CAP, base=CLUSTER_RETRY_BASE), 3),
    )


def describe(url: str) -> str:
    """Where `url` points, for logs: hosts and ports, the Sentinel service; no credentials.

    An unusable URL is described as such rather than raising, so that a log line never fails.
    """
    try:
        return _parse(url).describe()
    except RedisUrlError as exc:
        return f"<invalid redis URL: {exc}>"


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's bound (`max_connections`,
    `timeout`): SentinelConnectionPool passes its other arguments on to BlockingConnectionPool."""


class _SentinelMaster(aioredis.Redis):
    """The master client of a Sentinel setup; closing it closes the sentinel clients too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool = self.connection_pool
            if isinstance(pool, SentinelConnectionPool):
                for sentinel in pool.sentinel_manager.sentinels:
                    await sentinel.aclose()


def _parse(url: str) -> _Parsed:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisUrlError("a Redis URL needs a scheme (redis://, redis+sentinel://, ...)")
    scheme = scheme.lower()
    if scheme not in (*_PLAIN_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise RedisUrlError(
            f"unknown Redis URL scheme {scheme[:20]!r}: use redis, rediss, "
            f"{SENTINEL_SCHEME} or {CLUSTER_SCHEME}"
        )
    # The query (redis-py options) is not ours to parse for the plain forms.
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    parts = [p for p in path.split("/") if p] if path else []
    if scheme in _PLAIN_SCHEMES:
        hosts = _hosts(scheme, hostlist, default_port=6379, many=False)
        db = _db(parts[0]) if parts else 0
        if len(parts) > 1:
            raise RedisUrlError(f"{scheme}:// URL path must be /<db>")
        return _Parsed(scheme, hosts, username, password, None, db)
    hosts = _hosts(scheme, hostlist, default_port=_DEFAULT_PORTS[scheme], many=True)
    if scheme == SENTINEL_SCHEME:
        if not parts or len(parts) > 2:
            raise RedisUrlError(f"{scheme}:// URL path must be /<service_name>[/<db>]")
        if not _SERVICE.fullmatch(parts[0]):
            raise RedisUrlError(f"{scheme}:// URL: malformed service name")
        db = _db(parts[1]) if len(parts) == 2 else 0
        return _Parsed(scheme, hosts, username, password, parts[0], db)
    if len(parts) > 1 or (parts and _db(parts[0]) != 0):
        raise RedisUrlError(f"{scheme}:// URL: Redis Cluster has only db 0")
    return _Parsed(scheme, hosts, username, password, None, 0)


def _hosts(scheme: str, hostlist: str, *, default_port: int, many: bool) -> list[tuple[str, int]]:
    items = hostlist.split(",")
    if not hostlist or any(not item for item in items):
        raise RedisUrlError(f"{scheme}:// URL names no host (or an empty one)")
    if len(items) > 1 and not many:
        raise RedisUrlError(f"{scheme}:// URL takes one host; use {SENTINEL_SCHEME} or "
                            f"{CLUSTER_SCHEME} for several")  # fmt: skip
    hosts = []
    for item in items:
        if item.startswith("["):
            host, _, port_text = item.partition("]")
            host, port_text = host + "]", port_text.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not _HOST.fullmatch(host):
            raise RedisUrlError(f"{scheme}:// URL: malformed host")
        if not port_text:
            port = default_port
        elif port_text.isdigit() and 0 < int(port_text) < 65536:
            port = int(port_text)
        else:
            raise RedisUrlError(f"{scheme}:// URL: malformed port")
        hosts.append((host.strip("[]"), port))
    return hosts


def _db(text: str) -> int:
    if not text.isdigit() or len(text) > 5:
        raise RedisUrlError("the database must be a number")
    return int(text)
