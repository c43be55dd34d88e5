"""MH choice: eligibility, least loaded first, distinct picks and zone spreading, as tables."""

from __future__ import annotations

import pytest

from darktower.gc.placement.mh_choice import DEFAULT_MH_COUNT, MhCandidate, choose_mhs

REGION = "eu-west"
STALENESS = 30.0


def mh(
    id: str = "mh-a",
    *,
    region: str = REGION,
    zone: str | None = None,
    health: str = "healthy",
    max_streams: int = 100,
    streams: int = 0,
    age: float | None = 1.0,
) -> MhCandidate:
    return MhCandidate(
        id=id,
        region=region,
        zone=zone,
        health=health,
        max_streams=max_streams,
        current_streams=streams,
        last_report_age_s=age,
        webtransport_endpoint=f"https://{id}.example:4433",
    )


def ids(chosen: list[MhCandidate]) -> list[str]:
    return [m.id for m in chosen]


ELIGIBILITY = [
    ("healthy-idle", mh(), True),
    ("degraded-included", mh(health="degraded"), True),
    ("pending-excluded", mh(health="pending"), False),
    ("unhealthy-excluded", mh(health="unhealthy"), False),
    ("draining-excluded", mh(health="draining"), False),
    ("other-region", mh(region="us-east"), False),
    ("age-at-staleness", mh(age=STALENESS), True),
    ("age-just-over-staleness", mh(age=STALENESS + 0.001), False),
    ("never-reported", mh(age=None), False),
    ("streams-max-minus-1", mh(streams=99), True),
    ("streams-at-max", mh(streams=100), False),
    ("zero-capacity", mh(max_streams=0), False),
]


@pytest.mark.parametrize(
    ("candidate", "eligible"),
    [case[1:] for case in ELIGIBILITY],
    ids=[case[0] for case in ELIGIBILITY],
)
def test_eligibility(candidate: MhCandidate, eligible: bool) -> None:
    got = choose_mhs([candidate], region=REGION, staleness_s=STALENESS)
    assert got == ([candidate] if eligible else [])


CHOICE = [
    # (id, candidates, count, expected ids in pick order)
    (
        "least-loaded-first",
        [mh("mh-a", streams=50), mh("mh-b", streams=10), mh("mh-c", streams=30)],
        2,
        ["mh-b", "mh-c"],
    ),
    (
        "load-is-a-ratio",
        [mh("mh-a", streams=20, max_streams=100), mh("mh-b", streams=30, max_streams=300)],
        2,
        ["mh-b", "mh-a"],
    ),
    ("ties-by-id", [mh("mh-c"), mh("mh-a"), mh("mh-b")], 2, ["mh-a", "mh-b"]),
    ("count-one", [mh("mh-a", streams=5), mh("mh-b")], 1, ["mh-b"]),
    ("count-zero", [mh("mh-a")], 0, []),
    ("count-larger-than-available", [mh("mh-a"), mh("mh-b", streams=1)], 5, ["mh-a", "mh-b"]),
    ("single-available", [mh("mh-a"), mh("mh-b", health="unhealthy")], 2, ["mh-a"]),
    ("none-eligible", [mh("mh-a", age=None), mh("mh-b", region="us-east")], 2, []),
    ("no-candidates", [], 2, []),
    (
        "ineligible-emptier-skipped",
        [mh("mh-a", streams=0, health="draining"), mh("mh-b", streams=40), mh("mh-c", streams=60)],
        2,
        ["mh-b", "mh-c"],
    ),
    # Zone spreading.
    (
        "two-zones-one-of-each",
        [
            mh("mh-a1", zone="a", streams=10),
            mh("mh-a2", zone="a", streams=11),
            mh("mh-b1", zone="b", streams=80),
        ],
        2,
        ["mh-a1", "mh-b1"],
    ),
    (
        "new-zone-least-loaded-of-its-zone",
        [
            mh("mh-a1", zone="a", streams=10),
            mh("mh-b1", zone="b", streams=70),
            mh("mh-b2", zone="b", streams=40),
        ],
        2,
        ["mh-a1", "mh-b2"],
    ),
    (
        "three-zones-three-picks",
        [
            mh("mh-a1", zone="a"),
            mh("mh-a2", zone="a", streams=1),
            mh("mh-b1", zone="b", streams=50),
            mh("mh-c1", zone="c", streams=60),
        ],
        3,
        ["mh-a1", "mh-b1", "mh-c1"],
    ),
    (
        "zones-exhausted-then-least-loaded",
        [
            mh("mh-a1", zone="a"),
            mh("mh-a2", zone="a", streams=5),
            mh("mh-b1", zone="b", streams=50),
            mh("mh-b2", zone="b", streams=60),
        ],
        3,
        ["mh-a1", "mh-b1", "mh-a2"],
    ),
    (
        "one-zone-only",
        [mh("mh-a1", zone="a", streams=5), mh("mh-a2", zone="a"), mh("mh-a3", zone="a", streams=9)],
        2,
        ["mh-a2", "mh-a1"],
    ),
    (
        "ineligible-mh-in-other-zone-ignored",
        [
            mh("mh-a1", zone="a"),
            mh("mh-a2", zone="a", streams=5),
            mh("mh-b1", zone="b", health="unhealthy"),
        ],
        2,
        ["mh-a1", "mh-a2"],
    ),
    # Unknown zones: plain least-loaded order.
    (
        "zones-unknown",
        [mh("mh-a", streams=10), mh("mh-b", streams=20), mh("mh-c", streams=30)],
        2,
        ["mh-a", "mh-b"],
    ),
    (
        "unknown-zone-is-not-a-new-zone",
        [mh("mh-a1", zone="a"), mh("mh-a2", zone="a", streams=5), mh("mh-x", streams=50)],
        2,
        ["mh-a1", "mh-a2"],
    ),
    (
        "first-pick-zone-unknown-no-spreading",
        [mh("mh-x"), mh("mh-a1", zone="a", streams=10), mh("mh-b1", zone="b", streams=50)],
        2,
        ["mh-x", "mh-a1"],
    ),
]


@pytest.mark.parametrize(
    ("candidates", "count", "expected"),
    [case[1:] for case in CHOICE],
    ids=[case[0] for case in CHOICE],
)
def test_choose_mhs(candidates: list[MhCandidate], count: int, expected: list[str]) -> None:
    chosen = choose_mhs(candidates, region=REGION, staleness_s=STALENESS, count=count)
    assert ids(chosen) == expected
    assert len(set(ids(chosen))) == len(chosen)


def test_default_count_is_two() -> None:
    assert DEFAULT_MH_COUNT == 2
    fleet = [mh(f"mh-{i}", streams=i) for i in range(5)]
    assert ids(choose_mhs(fleet, region=REGION, staleness_s=STALENESS)) == ["mh-0", "mh-1"]


def test_returns_the_candidates_themselves() -> None:
    only = mh("mh-a", zone="a")
    assert choose_mhs([only], region=REGION, staleness_s=STALENESS)[0] is only


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError, match="count"):
        choose_mhs([mh()], region=REGION, staleness_s=STALENESS, count=-1)


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        choose_mhs([mh("mh-a"), mh("mh-a", streams=3)], region=REGION, staleness_s=STALENESS)
