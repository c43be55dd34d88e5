"""Script calls on a Redis Cluster: one pipeline, each node its share in one round trip.

Every script's KEYS are the keys of one meeting, which share a hash slot, so each call runs
on the node owning that meeting. `run_batch` queues the EVALSHAs in a redis-py cluster
pipeline, which groups them by node and sends each node its commands in one round trip, all
nodes in parallel. The pipeline cannot load scripts by itself (redis-py's script object does
not support cluster pipelines), so the calls answered NOSCRIPT run once more after a SCRIPT
LOAD on every primary.

With a `ReplicaWait`, each script is followed by a WAIT routed to the node owning the
meeting's slot, in the same per-node pipeline, so it counts that node's replicas for that
write. If the slot moves between the script and the WAIT (MOVED, resharding), redis-py resends
the script alone and the WAIT answers for the old node: the confirmation is then only best
effort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from darktower.fencing.keys import MeetingKeys

__all__ = ["ReplicaWait", "ScriptCall", "run_batch"]


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One script call: the script, the meeting's keys, the KEYS it is sent, its ARGV."""

    script: AsyncScript
    keys: MeetingKeys
    script_keys: tuple[str, ...]
    args: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """A WAIT after each script: `replicas` acknowledgements, up to `timeout_ms`."""

    replicas: int
    timeout_ms: int


async def run_batch(
    cluster: RedisCluster, calls: Sequence[ScriptCall], *, wait: ReplicaWait | None = None
) -> list[list[Any]]:
    """Run script calls in one cluster pipeline; per call its replies, errors included.

    With `wait`, a call's replies are [script reply, acknowledged replicas]; otherwise
    [script reply]. Calls answered NOSCRIPT (a node that never saw the script, or lost its
    cache in a restart or failover) run once more after the script is loaded on every primary.
    """
    width = 1 if wait is None else 2
    results: list[list[Any]] = [[] for _ in calls]
    pending = list(range(len(calls)))
    for attempt in range(2):
        async with cluster.pipeline(transaction=False) as pipe:
            for i in pending:
                call = calls[i]
                pipe.execute_command(
                    "EVALSHA", call.script.sha, len(call.script_keys), *call.script_keys, *call.args
                )
                if wait is not None:
                    node = cluster.get_node_from_key(call.keys.gen)
                    pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms, target_nodes=node)
            replies = await pipe.execute(raise_on_error=False)
        unknown = []
        for n, i in enumerate(pending):
            results[i] = list(replies[n * width : (n + 1) * width])
            if isinstance(results[i][0], NoScriptError):
                unknown.append(i)
        if not unknown or attempt:
            break
        for script in {calls[i].script for i in unknown}:
            await cluster.script_load(script.script)
        pending = unknown
    return results
