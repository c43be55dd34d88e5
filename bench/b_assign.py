"""assign: AssignMeetingWithMh through a real MC against a bare servicer, at concurrency 1 and 32.

The MC (own process, its own embedded Redis) does everything a real assignment does: token
verification in the interceptor, validation, admission in the controller actor, acquire and
the fenced MH write in Redis, the meeting actor's start. The baseline is a grpc.aio servicer
in a process of its own that answers `accepted=true` and does nothing else. Both are called
by the same client, on the same kind of channel (insecure, loopback), with the same request
and the same token metadata, in alternating rounds, so that the machine's background load
falls on both alike. Every call assigns a new meeting.

Each round makes at most 1000 assignments (an MC's production limit), and the MC ends all its
meetings between rounds, so it always hosts between 0 and 1000: admission scans the hosted
meetings (see README), and an MC grown to tens of thousands would measure that scan instead.
The meeting touch (a fenced write per hosted meeting every 5 s) is set to an hour: it is
background work proportional to the meetings hosted, not part of an assignment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from bench.context import BenchContext
from bench.hosting import Host, Service, hosts
from bench.load import LoadRun, error_notes, run_load
from bench.profiling import Profile
from bench.results import BenchResult, Metric
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.interceptor import GRPC_SERVER_OPTIONS
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.embedded.redis import EmbeddedRedis
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["NAME", "bare_service", "run"]

NAME = "assign"
TIMEOUT_S = (300.0, 60.0)  # full, smoke
HOSTED_LIMIT = 1000  # the production max_meetings of an MC (docs/reference.md)


class _BareServicer(pb_grpc.MeetingControllerServiceServicer):
    async def AssignMeetingWithMh(
        self, request: pb.AssignMeetingWithMhRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingWithMhResponse:
        return pb.AssignMeetingWithMhResponse(accepted=True)


class _BareService:
    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.info: dict[str, Any] = {"grpc_port": port}

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        await self._server.stop(grace=1.0)


async def bare_service(params: Mapping[str, Any]) -> Service:
    """The baseline: the MC's service on a grpc.aio server with the MC's options, no work."""
    server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
    # Only AssignMeetingWithMh is called; the legacy RPCs keep the generated defaults.
    servicer = _BareServicer()  # type: ignore[abstract]
    pb_grpc.add_MeetingControllerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return _BareService(server, port)


def assign_request(meeting_id: str) -> pb.AssignMeetingWithMhRequest:
    """What the GC sends: a meeting and two ranked MHs."""
    return pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id=f"mh-{i + 1}",
                webtransport_endpoint=f"https://mh-{i + 1}.bench.invalid:4433",
                role=pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP,
            )
            for i in range(2)
        ],
        requesting_gc_id="gc-bench",
    )


def gc_tokens(ctx: BenchContext, mc_id: str) -> ServiceTokenProvider:
    """The GC's tokens for MC `mc_id` (its `aud`)."""
    service_type, scope = SERVICE_PROFILES["gc"]
    return ServiceTokenProvider(
        load_private_key(ctx.keys / "gc.key"),
        service_type=service_type,
        scope=scope,
        issuer="gc-bench",
        audience=mc_id,
    )


class AssignClient:
    """One channel to one server; `call(meeting_id)` raises unless the answer is accepted."""

    def __init__(self, port: int, metadata: tuple[tuple[str, str], ...]) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._stub = pb_grpc.MeetingControllerServiceStub(self.channel)
        self._metadata = metadata

    def caller(self, prefix: str) -> Callable[[int], Awaitable[None]]:
        """A load-loop call that assigns meeting `<prefix>-<i>`."""
        return lambda i: self.call(f"{prefix}-{i}")

    async def call(self, meeting_id: str) -> None:
        answer = await self._stub.AssignMeetingWithMh(
            assign_request(meeting_id), metadata=self._metadata, timeout=10
        )
        if not answer.accepted:
            raise RuntimeError(f"refused: {pb.RejectionReason.Name(answer.rejection_reason)}")


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    rounds = ctx.pick(4, 1)
    # concurrency: (calls, max seconds) per round. At most HOSTED_LIMIT calls per round: the
    # MC ends its meetings between rounds, so it hosts 0..1000 as in production.
    plan = {
        1: ctx.pick((HOSTED_LIMIT, 8.0), (20, 3.0)),
        32: ctx.pick((HOSTED_LIMIT, 8.0), (64, 3.0)),
    }
    result.parameters.update(
        {
            "rounds": rounds,
            "per_round": {str(c): {"max_calls": n, "max_s": s} for c, (n, s) in plan.items()},
            "hosted_meetings": f"0..{HOSTED_LIMIT} (all ended between rounds)",
            "mhs_per_request": 2,
            "meeting_touch_seconds": 3600,
        }
    )
    with EmbeddedRedis() as redis:
        mc = ctx.host(
            "assign-mc",
            "bench.services:mc_service",
            {
                "id": "mc-bench",
                "redis_url": redis.url,
                "max_meetings": 10**6,
                "meeting_touch_seconds": 3600,
            },
        )
        bare = ctx.host("assign-bare", "bench.b_assign:bare_service")
        async with hosts(mc, bare):
            metadata = gc_tokens(ctx, "mc-bench").metadata()
            clients = {
                "mc": AssignClient(mc.info["grpc_port"], metadata),
                "bare": AssignClient(bare.info["grpc_port"], metadata),
            }
            try:
                for name, client in clients.items():  # warm up both: channels, code paths
                    await run_load(
                        client.caller(f"warm-{name}"),
                        concurrency=8,
                        max_calls=ctx.pick(200, 16),
                        max_seconds=10,
                    )
                await mc.call({"cmd": "end_all"})
                runs: dict[tuple[str, int], LoadRun] = {}
                for concurrency, (max_calls, max_s) in plan.items():
                    for r in range(rounds):
                        order = ("bare", "mc") if r % 2 == 0 else ("mc", "bare")
                        for name in order:
                            run = await run_load(
                                clients[name].caller(f"m-c{concurrency}-r{r}"),
                                concurrency=concurrency,
                                max_calls=max_calls,
                                max_seconds=max_s,
                            )
                            key = (name, concurrency)
                            runs[key] = runs[key].merge(run) if key in runs else run
                        await mc.call({"cmd": "end_all"})
                if ctx.profile_dir is not None:
                    result.profile["mc"] = await _profile(ctx, mc, clients["mc"])
            finally:
                for client in clients.values():
                    await client.channel.close(None)
    _metrics(result, runs)


async def _profile(ctx: BenchContext, mc: Host, client: AssignClient) -> dict[str, Any]:
    """py-spy on the MC under concurrency-32 load, in rounds of HOSTED_LIMIT assignments
    (an extra pass, not measured; the ends between rounds are not recorded)."""
    profile = Profile(ctx, "assign-mc-c32", mc.pid)
    for r in range(3):
        await profile.start()
        await run_load(
            client.caller(f"prof-{r}"), concurrency=32, max_calls=HOSTED_LIMIT, max_seconds=10
        )
        await profile.stop()
        await mc.call({"cmd": "end_all"})
    return profile.summary()


def _metrics(result: BenchResult, runs: dict[tuple[str, int], LoadRun]) -> None:
    mc1, bare1, mc32, bare32 = runs["mc", 1], runs["bare", 1], runs["mc", 32], runs["bare", 32]
    result.add(Metric("c1 throughput", mc1.throughput, "/s", bare1.throughput))
    result.add(
        Metric(
            "c1 p50",
            mc1.ms(50),
            "ms",
            bare1.ms(50),
            target="≤ baseline + 0.5 ms",
            check=lambda m: m.baseline is not None and m.value <= m.baseline + 0.5,
        )
    )
    result.add(Metric("c1 p99", mc1.ms(99), "ms", bare1.ms(99)))
    result.add(
        Metric(
            "c32 throughput",
            mc32.throughput,
            "/s",
            bare32.throughput,
            target="≥ 0.5x baseline",
            check=lambda m: (m.ratio or 0) >= 0.5,
        )
    )
    result.add(Metric("c32 p50", mc32.ms(50), "ms", bare32.ms(50)))
    result.add(Metric("c32 p99", mc32.ms(99), "ms", bare32.ms(99)))
    errors = sum(r.errors for r in runs.values())
    result.add(Metric("errors", errors, "", target="0", check=lambda m: m.value == 0))
    result.parameters["calls"] = {f"{n}-c{c}": r.calls for (n, c), r in runs.items()}
    result.notes += error_notes(runs.values())
