"""The join use case: answer which MC hosts a meeting, placing it when needed (SPEC §4).

    live ACTIVE row on a healthy, fresh MC ──────────────────────────────▶ reuse it as it is
    live row on an MC that is unhealthy/stale/gone ──▶ end it (only if still on that MC) ─┐
    no live row ──▶ claim the meeting (one live row per meeting and region, in SQL) ◀────┘
        lost the claim ──▶ wait for the winner to activate, then answer its MC
        won the claim  ──▶ choose MHs, rank MCs, try up to `attempts` MCs (refusal or timeout
                           → next), activate the row on the MC that accepted; none → release
                           the claim and raise NoControllerAvailable

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
import re
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.join_tokens import JOIN_TOKEN_TTL_SECONDS, mint_join_token
from darktower.common.clock import Clock, utcnow
from darktower.common.errors import invalid_field_as
from darktower.common.health import PLACEABLE_HEALTH
from darktower.common.ids import validate_id
from darktower.common.limits import MAX_DISPLAY_NAME_CHARS
from darktower.gc.errors import InvalidArgument, NoControllerAvailable, NoMediaHandlerAvailable
from darktower.gc.mc_client import McClient, MhTargetSpec
from darktower.gc.placement.mc_choice import McCandidate, rank_mcs, why_none
from darktower.gc.placement.metrics import MC_CALL_LATENCY, MC_CALLS, PLACEMENTS
from darktower.gc.placement.mh_choice import MhCandidate, choose_mhs
from darktower.gc.store import Assignment, AssignmentState, ClaimLost, Controller, GcStore
from darktower.gc.store import MediaHandler as MhRow
from darktower.gc.store.repository import LivePlacement, Registry
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "SIGNALING_PATH",
    "USER_ID_PATTERN",
    "JoinResult",
    "JoinTokenIssuer",
    "Joiner",
    "MhInfo",
    "PlacementEvent",
    "PlacementService",
    "new_user_id",
    "signaling_url",
    "validate_joiner",
]

log = logging.getLogger(__name__)

MAX_ROUNDS = 4

SIGNALING_PATH = "/v1/signaling"
DEFAULT_DISPLAY_NAME = "Guest"
# ASCII letters, digits and `.`, `_`, `-`, `@` (e-mail-like ids): safe in logs, URLs and
# JSON without escaping, and nothing that could pose as another user's id through Unicode.
USER_ID_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_USER_ID = re.compile(USER_ID_PATTERN)
# Unicode categories refused in display names: control characters, surrogates, line and
# paragraph separators; and the bidirectional overrides and isolates, which would let a name
# reorder the text shown after it on other participants' screens.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class Joiner:
    """Who joins: a user id (stable across reconnects) and the name others see."""

    user_id: str
    display_name: str


def new_user_id() -> str:
    """A random user id for a joiner who gave none: `u-` and 16 hex digits."""
    return "u-" + secrets.token_hex(8)


def validate_joiner(user_id: str | None, display_name: str | None) -> Joiner:
    """The joiner a request names, defaults filled in; `InvalidArgument` naming the field.

    `user_id`: absent → `new_user_id()`; else 1 to 64 of `USER_ID_PATTERN`'s characters.
    `display_name`: absent → "Guest"; else trimmed of surrounding white space, then 1 to 100
    characters, none of them a control character, a surrogate, a line or paragraph separator
    or a bidirectional control.
    """
    if user_id is None:
        user_id = new_user_id()
    elif not _USER_ID.fullmatch(user_id):
        raise InvalidArgument("user_id", "must be 1 to 64 of A-Z a-z 0-9 . _ - @")
    if display_name is None:
        display_name = DEFAULT_DISPLAY_NAME
    else:
        display_name = display_name.strip()
        if not display_name:
            raise InvalidArgument("display_name", "must not be empty")
        if len(display_name) > MAX_DISPLAY_NAME_CHARS:
            raise InvalidArgument(
                "display_name", f"must be at most {MAX_DISPLAY_NAME_CHARS} characters"
            )
        if any(
            unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _BIDI_CONTROLS
            for ch in display_name
        ):
            raise InvalidArgument("display_name", "must not contain control characters")
    return Joiner(user_id=user_id, display_name=display_name)


def signaling_url(client_endpoint: str | None) -> str | None:
    """The WebSocket URL of an MC's client signaling, from the client endpoint it registered:
    `http://h:p[/base]` → `ws://h:p[/base]/v1/signaling`, `https` → `wss`. None when the MC
    registered none (or something that is not an http(s) URL with a host)."""
    if not client_endpoint:
        return None
    parts = urlsplit(client_endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        return None
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + SIGNALING_PATH, "", ""))


@dataclass(frozen=True, slots=True)
class JoinTokenIssuer:
    """Mints the meeting join tokens of this GC (`issuer` = the GC's id)."""

    private_key: Ed25519PrivateKey = field(repr=False)
    issuer: str
    ttl_seconds: int = JOIN_TOKEN_TTL_SECONDS

    def mint(self, meeting_id: str, joiner: Joiner) -> str:
        return mint_join_token(
            self.private_key,
            meeting_id=meeting_id,
            user_id=joiner.user_id,
            display_name=joiner.display_name,
            issuer=self.issuer,
            ttl_seconds=self.ttl_seconds,
        )


@dataclass(frozen=True, slots=True)
class MhInfo:
    mh_id: str
    webtransport_endpoint: str
    role: str  # "primary" | "backup"


@dataclass(frozen=True, slots=True)
class JoinResult:
    meeting_id: str
    region: str
    mc_id: str
    mc_grpc_endpoint: str
    mc_client_endpoint: str | None
    media_handlers: tuple[MhInfo, ...]
    reused: bool
    user_id: str
    display_name: str
    join_token: str
    signaling_url: str | None


@dataclass(frozen=True, slots=True)
class PlacementEvent:
    """One line of the recent-placements log (for operators and the dashboard)."""

    at: datetime
    meeting_id: str
    mc_id: str | None
    outcome: str  # "accepted", "reused", "moved", or the refusal / failure reason
    detail: str = ""
    # On "moved" (the meeting left `mc_id`) and on the "accepted" that placed it anew: the
    # MC it left and why ("unhealthy", "draining", "stale", "gone", "restarted").
    previous_mc_id: str | None = None
    move_reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Move:
    """A meeting taken off its MC by this join, to be placed anew."""

    previous_mc_id: str
    reason: str


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
    ) -> None:
        self._store = store
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

    async def join(
        self, meeting_id: str, *, user_id: str | None = None, display_name: str | None = None
    ) -> JoinResult:
        """Where the meeting is (placed now if needed), with a fresh join token for the
        joiner (`validate_joiner`). InvalidArgument for a bad meeting id, user id or name."""
        with invalid_field_as(InvalidArgument):
            validate_id(meeting_id, "meeting_id")
        joiner = validate_joiner(user_id, display_name)
        move: _Move | None = None
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
            claim, registry = await self._store.claim_and_read_registry(
                meeting_id,
                self._region,
                self._gc_id,
                self._now(),
                stale_claim_after=self._claim_stale,
            )
            if not claim.won:
                continue
            assert registry is not None
            if claim.taken_over is not None:
                log.warning("meeting %s: took over a stale claim", meeting_id)
            return await self._place(meeting_id, joiner, registry, move)
        raise NoControllerAvailable("contended", "the meeting kept changing hands; try again")

    # -- reuse -----------------------------------------------------------------------------

    async def _reuse(self, placement: LivePlacement, joiner: Joiner) -> JoinResult | _Move:
        """The answer from the live assignment, or — its MC no longer fit to host — the
        assignment ended and what the move away from that MC was."""
        live, controller = placement.assignment, placement.controller
        assert live.mc_id is not None
        if (
            controller is not None
            and self._usable(controller)
            and not _restarted_since(controller, live)
        ):
            PLACEMENTS.labels("reused", "").inc()
            return self._result(
                live.meeting_id,
                controller,
                live.mh_ids,
                placement.media_handlers,
                joiner,
                reused=True,
            )
        if controller is None:
            reason = "gone"
        elif _restarted_since(controller, live):
            reason = "restarted"  # registered again since: it no longer hosts the meeting
        elif controller.health.value in PLACEABLE_HEALTH:
            reason = "stale"  # no heartbeat within the threshold, not yet swept
        else:
            reason = controller.health.value
        log.info(
            "meeting %s: its MC %s is %s, placing it anew",
            live.meeting_id,
            live.mc_id,
            _move_text(reason, controller, self._now(), self._staleness_s),
        )
        self._event(
            live.meeting_id,
            live.mc_id,
            "moved",
            f"previous MC {reason}",
            previous_mc_id=live.mc_id,
            move_reason=reason,
        )
        await self._store.end_assignment_if(live.meeting_id, self._region, live.mc_id, self._now())
        return _Move(live.mc_id, reason)

    def _usable(self, c: Controller) -> bool:
        """Healthy or degraded, and heard from within the staleness threshold."""
        if c.health.value not in PLACEABLE_HEALTH or c.last_heartbeat_at is None:
            return False
        return (self._now() - c.last_heartbeat_at).total_seconds() <= self._staleness_s

    # -- placement -------------------------------------------------------------------------

    async def _place(
        self, meeting_id: str, joiner: Joiner, registry: Registry, move: _Move | None
    ) -> JoinResult:
        try:
            return await self._try_mcs(meeting_id, joiner, registry, move)
        except BaseException:
            await self._store.release_claim(meeting_id, self._region, self._gc_id)
            raise

    async def _try_mcs(
        self, meeting_id: str, joiner: Joiner, registry: Registry, move: _Move | None
    ) -> JoinResult:
        now = self._now()
        controllers, handlers = registry.controllers, registry.media_handlers
        mhs = choose_mhs(
            [_mh_candidate(h, now) for h in handlers],
            region=self._region,
            staleness_s=self._staleness_s,
        )
        if not mhs:
            PLACEMENTS.labels("failed", "no_media_handler").inc()
            self._event(meeting_id, None, "no_media_handler")
            raise NoMediaHandlerAvailable("no healthy media handler with free capacity")
        candidates = [_mc_candidate(c, now) for c in controllers]
        ranked = rank_mcs(
            candidates, region=self._region, staleness_s=self._staleness_s, rng=self._rng
        )
        if not ranked:
            reason = why_none(candidates, region=self._region, staleness_s=self._staleness_s)
            PLACEMENTS.labels("failed", reason.value).inc()
            self._event(meeting_id, None, reason.value)
            raise NoControllerAvailable(reason.value, _REASON_TEXT[reason.value])
        by_id = {c.id: c for c in controllers}
        targets = [
            MhTargetSpec(
                m.id, m.webtransport_endpoint, pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP
            )
            for i, m in enumerate(mhs)
        ]
        refusals: list[str] = []
        for candidate in ranked[: self._attempts]:
            controller = by_id[candidate.id]
            started = time.perf_counter()
            outcome = await self._mcs.assign(controller.grpc_endpoint, meeting_id, targets)
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


_REASON_TEXT = {
    "none_registered": "no meeting controller is registered in this region",
    "all_draining": "every meeting controller is draining",
    "all_at_capacity": "every meeting controller is at capacity",
    "none_healthy": "no healthy meeting controller is available",
}


def _restarted_since(controller: Controller, live: Assignment) -> bool:
    """The MC registered after the meeting was placed on it: a restarted process (same id)
    that holds none of its predecessor's meetings, so the assignment must not be reused."""
    assigned = live.assigned_at or live.claimed_at
    return controller.registered_at > assigned


def _move_text(
    reason: str, controller: Controller | None, now: datetime, staleness_s: float
) -> str:
    """A move's reason as the log says it: a stale MC with how long it has been silent."""
    if reason == "stale" and controller is not None:
        age = _age(controller.last_heartbeat_at, now)
        silent = "never heard from" if age is None else f"silent for {age:.1f} s"
        return f"stale ({silent}, over the {staleness_s:g} s threshold)"
    if reason == "gone":
        return "gone (no longer registered)"
    if reason == "restarted":
        return "restarted since the meeting was placed (it no longer holds it)"
    return reason


def _age(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


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
