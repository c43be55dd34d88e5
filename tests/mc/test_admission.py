"""The admission decision, as a table."""

from __future__ import annotations

import pytest

from darktower.mc.admission import (
    DEFAULT_PARTICIPANT_ESTIMATE,
    AdmissionState,
    Rejection,
    decide_admission,
    rejection_to_proto,
)
from darktower.wire.dark_tower import internal_pb2 as pb


def state(
    *,
    draining: bool = False,
    ready: bool = True,
    hosted: int = 0,
    admitting: int = 0,
    max_meetings: int = 10,
    participants: int = 0,
    max_participants: int = 100,
    estimate: int = DEFAULT_PARTICIPANT_ESTIMATE,
) -> AdmissionState:
    return AdmissionState(
        draining=draining,
        ready=ready,
        hosted_meetings=hosted,
        admitting=admitting,
        max_meetings=max_meetings,
        current_participants=participants,
        max_participants=max_participants,
        participant_estimate=estimate,
    )


DRAINING = Rejection.DRAINING
UNHEALTHY = Rejection.UNHEALTHY
FULL = Rejection.AT_CAPACITY

CASES = [
    ("idle-admits", state(), None),
    # Precedence: draining > not ready > capacity.
    ("draining", state(draining=True), DRAINING),
    ("draining-beats-not-ready", state(draining=True, ready=False), DRAINING),
    ("draining-beats-full", state(draining=True, hosted=10, participants=100), DRAINING),
    ("not-ready", state(ready=False), UNHEALTHY),
    ("not-ready-beats-full", state(ready=False, hosted=10, participants=100), UNHEALTHY),
    # Meeting limit: hosted + admitting >= max refuses.
    ("meetings-max-minus-1", state(hosted=9), None),
    ("meetings-at-max", state(hosted=10), FULL),
    ("meetings-over-max", state(hosted=11), FULL),
    ("meetings-admitting-counted", state(hosted=8, admitting=2), FULL),
    ("meetings-admitting-below", state(hosted=8, admitting=1, participants=0), None),
    # Participant limit: current + estimate * (admitting + 1) > max refuses.
    ("participants-exactly-max-after-estimate", state(participants=90), None),
    ("participants-one-over", state(participants=91), FULL),
    ("participants-admitting-reserve", state(participants=80, admitting=1), None),
    ("participants-admitting-overshoot", state(participants=81, admitting=1), FULL),
    ("participants-admitting-many", state(participants=0, admitting=9, max_meetings=20), None),
    ("participants-admitting-too-many", state(admitting=10, max_meetings=20), FULL),
    # The estimate is configurable.
    ("estimate-custom-fits", state(participants=75, estimate=25), None),
    ("estimate-custom-over", state(participants=76, estimate=25), FULL),
    ("estimate-zero-at-max", state(participants=100, estimate=0), None),
    ("estimate-zero-over-max", state(participants=101, estimate=0), FULL),
    # Limits of 0 refuse everything, after draining and readiness.
    ("max-meetings-zero", state(max_meetings=0), FULL),
    ("max-participants-zero", state(max_participants=0), FULL),
    ("max-participants-zero-estimate-zero", state(max_participants=0, estimate=0), None),
    ("limits-zero-draining", state(max_meetings=0, max_participants=0, draining=True), DRAINING),
    ("limits-zero-not-ready", state(max_meetings=0, max_participants=0, ready=False), UNHEALTHY),
]


@pytest.mark.parametrize(
    ("admission_state", "expected"),
    [pytest.param(s, e, id=case_id) for case_id, s, e in CASES],
)
def test_decide_admission(admission_state: AdmissionState, expected: Rejection | None) -> None:
    assert decide_admission(admission_state) == expected


def test_default_estimate_is_ten() -> None:
    assert DEFAULT_PARTICIPANT_ESTIMATE == 10
    assert (
        AdmissionState(
            draining=False,
            ready=True,
            hosted_meetings=0,
            admitting=0,
            max_meetings=1,
            current_participants=0,
            max_participants=9,
        ).participant_estimate
        == 10
    )


@pytest.mark.parametrize(
    "field",
    ["hosted", "admitting", "max_meetings", "participants", "max_participants", "estimate"],
)
def test_negative_counts_are_rejected(field: str) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        state(**{field: -1})


@pytest.mark.parametrize(
    ("rejection", "number"),
    [
        pytest.param(Rejection.DRAINING, pb.REJECTION_REASON_DRAINING, id="draining"),
        pytest.param(Rejection.UNHEALTHY, pb.REJECTION_REASON_UNHEALTHY, id="unhealthy"),
        pytest.param(Rejection.AT_CAPACITY, pb.REJECTION_REASON_AT_CAPACITY, id="at-capacity"),
    ],
)
def test_rejection_to_proto(rejection: Rejection, number: int) -> None:
    assert rejection_to_proto(rejection) == number
    assert rejection_to_proto(rejection) != pb.REJECTION_REASON_UNSPECIFIED
