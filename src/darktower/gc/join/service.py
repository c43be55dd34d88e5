"""The join use case: answer which MC hosts a meeting, placing it when needed (docs/reference.md).

    live ACTIVE row, `decide_reuse` says Reuse (healthy, fresh, not restarted) ──▶ reuse it
    Move(stale/unhealthy/draining/gone/restarted) ──▶ end it (only if still on that MC) ─┐
    no live row ──▶ claim the meeting (one live row per meeting and region, in SQL) ◀────┘
        lost the claim ──▶ wait for the winner to activate, then answer its MC
        won the claim  ──▶ choose MHs, rank MCs, try up to `attempts` MCs (refusal or timeout
                           → next), activate the row on the MC that accepted; none → release
                           the claim and raise NoControllerAvailable

A placement is a span (`placement`, under the request's) with the MC calls under it.

The claim makes concurrent joins — within one GC or across GC processes sharing PostgreSQL —
call at most one MC at a time for a meeting and all answer the same MC.

Every answer, placed or reused, also carries what the client needs to enter the meeting: a
fresh join token (Ed25519 JWT signed by this GC, `darktower.auth.join_tokens`) for the joining
user and the MC's signaling URL. Who joins (`Joiner`) is the caller's claim, checked for form
only (`validate_joiner`): the GC authenticates no end user, the token only binds the user id
and display name it was given to one meeting for a short while.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from darktower.common.clock import Clock, utcnow
from darktower.common.errors import invalid_field_as
from darktower.common.ids import validate_id
from darktower.common.meeting_settings import MeetingSettings
from darktower.gc.domain import (
    Assignment,
    AssignmentState,
    Controller,
    Health,
    LivePlacement,
    Registry,
)
from darktower.gc.domain import MediaHandler as MhRow
from darktower.gc.errors import InvalidGcRequest, NoControllerAvailable, NoMediaHandlerAvailable
from darktower.gc.ice import IceServers
from darktower.gc.join.answer import JoinResult, JoinTokenIssuer, MhInfo, signaling_url
from darktower.gc.join.events import PlacementEvent
from darktower.gc.join.evidence import EvidenceChecks
from darktower.gc.join.joiner import Joiner, validate_joiner
from darktower.gc.join.metrics import EVIDENCE_REPORTS, MC_CALL_LATENCY, MC_CALLS, PLACEMENTS
from darktower.gc.join.registry_cache import DEFAULT_MAX_AGE_S, RegistryCache
from darktower.gc.last_heard import LastHeard
from darktower.gc.mc_client import McClient, MhTargetSpec
from darktower.gc.placement import (
    ExistingAssignment,
    McCandidate,
    McRecord,
    MhCandidate,
    Move,
    Reuse,
    choose_mhs,
    decide_reuse,
    describe_move,
    rank_mcs,
    why_none,
)
from darktower.gc.store import ClaimLost, GcStore
from darktower.runtime.tracing import child_span
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["MAX_ROUNDS", "PlacementService"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 4


class PlacementService:
    def __init__(
        self,
        store: GcStore,
        mc_client: McClient,
        *,
        join_tokens: JoinTokenIssuer,
        gc_id: str,
        region: str,
        staleness_s: float,
        attempts: int = 3,
        claim_stale_s: float = 30.0,
        wait_for_winner_s: float = 35.0,
        rng: random.Random | None = None,
        now: Clock = utcnow,
        last_heard: LastHeard | None = None,
        evidence: EvidenceChecks | None = None,
        ice_servers: IceServers | None = None,
        registry_max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        """`evidence`: how a join's `unreachable_mc_id` is checked (None: such claims are
        ignored, the MC is re-placed only once its silence makes it stale). `ice_servers`:
        what answers hand the browser for ICE (None: nothing). `registry_max_age_s`: how long
        one read of the MCs and MHs serves placements (`RegistryCache`; 0: each reads)."""
        self._store = store
        self._registry = RegistryCache(
            lambda: store.read_registry(region), max_age_s=registry_max_age_s
        )
        self._ice = ice_servers
        self._evidence = evidence
        # Freshness by the newest beat / load report received, not only the stored one.
        self._last_heard = last_heard or LastHeard()
        self._mcs = mc_client
        self._join_tokens = join_tokens
        self._gc_id = gc_id
        self._region = region
        self._staleness_s = staleness_s
        self._attempts = attempts
        self._claim_stale = timedelta(seconds=claim_stale_s)
        self._wait_for_winner_s = wait_for_winner_s
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not cryptography
        self._now = now
        self.recent: deque[PlacementEvent] = deque(maxlen=200)

    @property
    def mc_client(self) -> McClient:
        """The client of MCs placements use (the meeting API calls MCs through it too)."""
        return self._mcs

    async def join(
        self,
        meeting_id: str,
        *,
        user_id: str | None = None,
        display_name: str | None = None,
        joiner: Joiner | None = None,
        settings: MeetingSettings | None = None,
        unreachable_mc_id: str | None = None,
    ) -> JoinResult:
        """Where the meeting is (placed now if needed), with a fresh join token for the
        joiner: `joiner` as the caller checked it (an access token's grant), else the one
        `user_id` and `display_name` name (`validate_joiner`). InvalidGcRequest for a bad
        meeting id, user id or name. `settings` (the meeting API's `POST /v1/meetings`) go to
        the MC when the meeting is placed now; a meeting already placed keeps its own."""
        with invalid_field_as(InvalidGcRequest):
            validate_id(meeting_id, "meeting_id")
        if joiner is None:
            joiner = validate_joiner(user_id, display_name)
        if unreachable_mc_id is not None:
            await self._weigh_evidence(meeting_id, unreachable_mc_id)
        move: Move | None = None
        for _ in range(MAX_ROUNDS):
            placement = await self._store.live_placement(meeting_id, self._region)
            if placement is not None and placement.assignment.state == AssignmentState.ACTIVE:
                reused = await self._reuse(placement, joiner)
                if isinstance(reused, JoinResult):
                    return reused
                move = reused
                continue
            if placement is not None:
                live = placement.assignment
                # Someone is placing it right now: wait for its answer — but no longer than
                # until its claim goes stale (its GC died), when claim_meeting takes it over.
                left = self._claim_stale - (self._now() - live.claimed_at)
                if left.total_seconds() > 0:
                    await self._store.wait_for_activation(
                        meeting_id,
                        self._region,
                        timeout=min(left.total_seconds(), self._wait_for_winner_s),
                    )
                    continue
            claim = await self._store.claim_meeting(
                meeting_id,
                self._region,
                self._gc_id,
                self._now(),
                stale_claim_after=self._claim_stale,
            )
            if not claim.won:
                continue
            if claim.taken_over is not None:
                log.warning("meeting %s: took over a stale claim", meeting_id)
            return await self._place(meeting_id, joiner, move, settings)
        raise NoControllerAvailable("contended", "the meeting kept changing hands; try again")

    async def _weigh_evidence(self, meeting_id: str, mc_id: str) -> None:
        """A client could not reach `mc_id`: if the meeting is live there, check that MC (once
        per MC for a burst of claims, `EvidenceChecks`); one found down is marked UNHEALTHY, so
        the join that follows moves the meeting. A claim about an MC that does not host the
        meeting, or about one already unhealthy, costs no check."""
        if self._evidence is None:
            return
        placement = await self._store.live_placement(meeting_id, self._region)
        live = placement.assignment if placement is not None else None
        controller = placement.controller if placement is not None else None
        if (
            live is None
            or live.state != AssignmentState.ACTIVE
            or live.mc_id != mc_id
            or controller is None
        ):
            EVIDENCE_REPORTS.labels("not_hosting").inc()
            return
        if controller.health is Health.UNHEALTHY:
            EVIDENCE_REPORTS.labels("already_unhealthy").inc()
            return
        down = await self._evidence.is_down(mc_id, controller.grpc_endpoint)
        EVIDENCE_REPORTS.labels("down" if down else "alive").inc()
        if down:
            self._registry.invalidate()
            log.info("meeting %s: MC %s found down on a client's evidence", meeting_id, mc_id)

    def _judged_at(self) -> datetime:
        """The moment MCs' and MHs' freshness is judged at: now, unless this GC has heard from
        nobody for a while — then its newest receipt, up to `staleness_s` back. A GC whose event
        loop is saturated (a join flood on a busy machine) receives every beat and load report
        late; it must not call all its peers silent for its own lateness (the sweeper allows
        for the same, `darktower.gc.sweeper`). A peer that really went silent still is, next
        to the others' fresh receipts."""
        now = self._now()
        newest = self._last_heard.newest()
        if newest is None or newest >= now:
            return now
        return max(newest, now - timedelta(seconds=self._staleness_s))

    # -- reuse -----------------------------------------------------------------------------

    async def _reuse(self, placement: LivePlacement, joiner: Joiner) -> JoinResult | Move:
        """The answer from the live assignment, or — its MC no longer fit to host
        (`decide_reuse`) — the assignment ended and what the move away from that MC was."""
        live, controller = placement.assignment, placement.controller
        if controller is not None:
            controller = self._last_heard.controller(controller)
        record, now = _mc_record(controller), self._judged_at()
        decision = decide_reuse(_existing(live), record, staleness_s=self._staleness_s, now=now)
        if isinstance(decision, Reuse):
            assert controller is not None
            PLACEMENTS.labels("reused", "").inc()
            return self._result(
                live.meeting_id,
                controller,
                live.mh_ids,
                placement.media_handlers,
                joiner,
                reused=True,
            )
        assert isinstance(decision, Move)
        # The live row's MC, just read, is fresher than the cached registry's: read it anew.
        self._registry.invalidate()
        log.info(
            "meeting %s: its MC %s is %s, placing it anew",
            live.meeting_id,
            decision.previous_mc_id,
            describe_move(decision, record, staleness_s=self._staleness_s, now=now),
        )
        self._event(
            live.meeting_id,
            decision.previous_mc_id,
            "moved",
            f"previous MC {decision.reason}",
            previous_mc_id=decision.previous_mc_id,
            move_reason=decision.reason,
        )
        await self._store.end_assignment_if(
            live.meeting_id, self._region, decision.previous_mc_id, self._now()
        )
        return decision

    # -- placement -------------------------------------------------------------------------

    async def _place(
        self,
        meeting_id: str,
        joiner: Joiner,
        move: Move | None,
        settings: MeetingSettings | None = None,
    ) -> JoinResult:
        try:
            # The MC calls (and their spans) under this one, in the join's trace.
            with child_span("placement", {"darktower.meeting_id": meeting_id}):
                return await self._try_mcs(meeting_id, joiner, move, settings)
        except BaseException:
            await self._store.release_claim(meeting_id, self._region, self._gc_id)
            raise

    def _choose(self, registry: Registry) -> _Choice:
        """The registry as placement judges it now: the MHs chosen, the MCs ranked (none when
        no MH is), and every MC candidate."""
        now = self._judged_at()
        controllers = [self._last_heard.controller(c) for c in registry.controllers]
        handlers = [self._last_heard.media_handler(h) for h in registry.media_handlers]
        mhs = choose_mhs(
            [_mh_candidate(h, now) for h in handlers],
            region=self._region,
            staleness_s=self._staleness_s,
        )
        candidates = [_mc_candidate(c, now) for c in controllers]
        ranked = (
            rank_mcs(candidates, region=self._region, staleness_s=self._staleness_s, rng=self._rng)
            if mhs
            else []
        )
        return controllers, handlers, mhs, candidates, ranked

    async def _try_mcs(
        self,
        meeting_id: str,
        joiner: Joiner,
        move: Move | None,
        settings: MeetingSettings | None = None,
    ) -> JoinResult:
        choice = self._choose(await self._registry.get())
        if not choice[4]:
            # Nothing placeable in the cached registry: never answer so without a fresh read.
            choice = self._choose(await self._registry.get(fresh=True))
        controllers, handlers, mhs, candidates, ranked = choice
        if not mhs:
            PLACEMENTS.labels("failed", "no_media_handler").inc()
            self._event(meeting_id, None, "no_media_handler")
            raise NoMediaHandlerAvailable("no healthy media handler with free capacity")
        if not ranked:
            reason = why_none(candidates, region=self._region, staleness_s=self._staleness_s)
            PLACEMENTS.labels("failed", reason.value).inc()
            self._event(meeting_id, None, reason.value)
            raise NoControllerAvailable(reason.value, _REASON_TEXT[reason.value])
        by_id = {c.id: c for c in controllers}
        grpc_endpoints = {h.id: h.grpc_endpoint for h in handlers}
        targets = [
            MhTargetSpec(
                m.id,
                m.webtransport_endpoint,
                pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP,
                grpc_endpoint=grpc_endpoints.get(m.id, ""),
            )
            for i, m in enumerate(mhs)
        ]
        refusals: list[str] = []
        for candidate in ranked[: self._attempts]:
            controller = by_id[candidate.id]
            started = time.perf_counter()
            outcome = await self._mcs.assign(
                controller.grpc_endpoint,
                meeting_id,
                targets,
                mc_id=controller.id,
                settings=settings,
            )
            MC_CALL_LATENCY.observe(time.perf_counter() - started)
            MC_CALLS.labels("accepted" if outcome.accepted else outcome.reason).inc()
            if not outcome.accepted:
                refusals.append(f"{controller.id}: {outcome.reason}")
                self._event(meeting_id, controller.id, outcome.reason)
                continue
            try:
                await self._store.activate_assignment(
                    meeting_id,
                    self._region,
                    self._gc_id,
                    controller.id,
                    [m.id for m in mhs],
                    self._now(),
                )
            except ClaimLost:
                # Our claim was ended under us (taken over as stale): the other placement wins.
                log.warning("meeting %s: claim lost after %s accepted", meeting_id, controller.id)
                PLACEMENTS.labels("failed", "claim_lost").inc()
                raise NoControllerAvailable(
                    "contended", "another placement won; try again"
                ) from None
            self._registry.assigned(controller.id)
            PLACEMENTS.labels("placed", "").inc()
            self._event(
                meeting_id,
                controller.id,
                "accepted",
                previous_mc_id=move.previous_mc_id if move else None,
                move_reason=move.reason if move else None,
            )
            return self._result(
                meeting_id,
                controller,
                tuple(m.id for m in mhs),
                {h.id: h for h in handlers},
                joiner,
                reused=False,
            )
        PLACEMENTS.labels("failed", "all_refused").inc()
        raise NoControllerAvailable("all_refused", "every MC tried refused: " + "; ".join(refusals))

    def _result(
        self,
        meeting_id: str,
        controller: Controller,
        mh_ids: tuple[str, ...],
        handlers: Mapping[str, MhRow],
        joiner: Joiner,
        *,
        reused: bool,
    ) -> JoinResult:
        infos = tuple(
            MhInfo(mh_id, handlers[mh_id].webtransport_endpoint, "primary" if i == 0 else "backup")
            for i, mh_id in enumerate(mh_ids)
            if mh_id in handlers
        )
        return JoinResult(
            meeting_id=meeting_id,
            region=self._region,
            mc_id=controller.id,
            mc_grpc_endpoint=controller.grpc_endpoint,
            mc_client_endpoint=controller.webtransport_endpoint,
            media_handlers=infos,
            reused=reused,
            user_id=joiner.user_id,
            display_name=joiner.display_name,
            join_token=self._join_tokens.mint(meeting_id, joiner),
            signaling_url=signaling_url(controller.webtransport_endpoint),
            ice_servers=self._ice.for_participant(joiner.user_id) if self._ice else (),
        )

    def _event(
        self,
        meeting_id: str,
        mc_id: str | None,
        outcome: str,
        detail: str = "",
        *,
        previous_mc_id: str | None = None,
        move_reason: str | None = None,
    ) -> None:
        self.recent.append(
            PlacementEvent(
                self._now(), meeting_id, mc_id, outcome, detail, previous_mc_id, move_reason
            )
        )


_Choice = tuple[
    list[Controller], list[MhRow], list[MhCandidate], list[McCandidate], list[McCandidate]
]

_REASON_TEXT = {
    "none_registered": "no meeting controller is registered in this region",
    "all_draining": "every meeting controller is draining",
    "all_at_capacity": "every meeting controller is at capacity",
    "none_healthy": "no healthy meeting controller is available",
}


def _age(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def _existing(live: Assignment) -> ExistingAssignment:
    assert live.mc_id is not None
    return ExistingAssignment(live.mc_id, live.assigned_at or live.claimed_at)


def _mc_record(c: Controller | None) -> McRecord | None:
    if c is None:
        return None
    return McRecord(c.health.value, c.last_heartbeat_at, c.registered_at)


def _mc_candidate(c: Controller, now: datetime) -> McCandidate:
    return McCandidate(
        id=c.id,
        region=c.region,
        health=c.health.value,
        max_meetings=c.max_meetings,
        current_meetings=c.current_meetings,
        max_participants=c.max_participants,
        current_participants=c.current_participants,
        last_heartbeat_age_s=_age(c.last_heartbeat_at, now),
        assignments_since_heartbeat=c.assignments_since_heartbeat,
    )


def _mh_candidate(h: MhRow, now: datetime) -> MhCandidate:
    return MhCandidate(
        id=h.id,
        region=h.region,
        zone=h.zone,
        health=h.health.value,
        max_streams=h.max_streams,
        current_streams=h.current_streams,
        last_report_age_s=_age(h.last_report_at, now),
        webtransport_endpoint=h.webtransport_endpoint,
    )
