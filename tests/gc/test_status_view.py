"""`darktower status`'s view of the fleet, as pure functions: ages, abbreviated meeting lists,
tables that fit 80 columns without cutting an id, the JSON document."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from darktower.gc.status_view import FleetView, abbreviate, age, renderables, status_document


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "never"),
        (-0.2, "0.0s"),  # a clock a little ahead: not a negative age
        (0.04, "0.0s"),
        (9.94, "9.9s"),
        (10.0, "10s"),
        (119.4, "119s"),
        (120.0, "2m"),
        (7199.0, "119m"),
        (7200.0, "2h"),
        (2 * 86400 - 1, "47h"),
        (2 * 86400, "2d"),
        (400 * 86400, "400d"),
    ],
)
def test_age(seconds: float | None, shown: str) -> None:
    assert age(seconds) == shown


@pytest.mark.parametrize(
    ("ids", "width", "shown"),
    [
        ([], 40, "-"),
        (["a"], 1, "a"),
        (["a", "b", "c"], 7, "a, b, c"),
        (["a", "b", "c"], 6, "a, +2 more"),  # "a, b" + ", +1 more" does not fit either
        (["a", "b", "c"], 11, "a, b, c"),
        (["aaaa", "b", "c"], 9, "aaaa, +2 more"),
        (["x" * 30], 10, "x" * 30),
        (["aaaa", "b", "c"], 14, "aaaa, b, c"),
        (["x" * 100, "b"], 20, "x" * 100 + ", +1 more"),  # the first is shown whole
        ([f"m{i}" for i in range(10)], 26, "m0, m1, m2, m3, +6 more"),
    ],
)
def test_abbreviate(ids: list[str], width: int, shown: str) -> None:
    assert abbreviate(ids, width) == shown


def _controller(mc_id: str, region: str = "eu", **extra: Any) -> dict[str, Any]:
    return {
        "id": mc_id,
        "region": region,
        "health": "healthy",
        "grpc_endpoint": f"http://{mc_id}.controllers.example.internal:50052",
        "current_meetings": 1,
        "max_meetings": 1000,
        "current_participants": 10000,
        "max_participants": 10000,
        "heartbeat_age_s": 0.5,
        **extra,
    }


def _handler(mh_id: str, region: str = "eu") -> dict[str, Any]:
    return {
        "id": mh_id,
        "region": region,
        "zone": "zone-a",
        "health": "degraded",
        "current_streams": 1,
        "max_streams": 1000,
    }


def _text(view: FleetView, width: int = 80) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    try:
        for renderable in renderables(view, console.width):
            console.print(renderable)
        return console.export_text()
    finally:
        console.file.close()


# Letters found nowhere else in the output, so that each id can be counted though folded.
LONG_MC, LONG_MH, LONG_MEETING = "mc-" + "k" * 150, "mh-" + "j" * 120, "m-" + "q" * 200


@pytest.mark.parametrize("regions", [("eu", "eu"), ("eu", "us-east-1")])
def test_tables_fit_80_columns_and_fold_long_ids_instead_of_cutting_them(
    regions: tuple[str, str],
) -> None:
    view = FleetView(
        gc_url="http://gc.example.internal:8080",
        controllers=[_controller("mc-1", regions[0]), _controller(LONG_MC, regions[1])],
        media_handlers=[_handler("mh-1", regions[0]), _handler(LONG_MH, regions[1])],
        meetings=[{"meeting_id": LONG_MEETING, "mc_id": "mc-1"}],
        meetings_total=1,
    )
    text = _text(view)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    # Whole, folded over several lines: the MC id as id, in its endpoint and in "meetings by MC".
    assert (text.count("k"), text.count("j"), text.count("q")) == (3 * 150, 120, 200)
    headers = [line.split() for line in lines]
    if regions[0] == regions[1]:
        assert "region eu" in lines[0]
        assert ["id", "zone", "health", "streams"] in headers
    else:
        assert "region" not in lines[0]
        assert ["id", "region", "zone", "health", "streams"] in headers


def test_a_region_with_brackets_is_shown_not_read_as_markup() -> None:
    view = FleetView("http://gc", [_controller("mc-1", "[bold]eu[/bold]")], [], [], 0)
    assert "[bold]eu[/bold]" in _text(view, width=120)


def test_the_document_lists_the_meetings_each_mc_hosts() -> None:
    meetings = [
        {"meeting_id": "busy", "mc_id": "mc-2", "participants": 9},
        {"meeting_id": "quiet", "mc_id": "mc-1", "participants": 1},
        {"meeting_id": "small", "mc_id": "mc-2", "participants": 1},
    ]
    view = FleetView(
        "http://gc",
        [_controller("mc-1"), _controller("mc-2"), _controller("mc-3")],
        [],
        meetings,
        5,
    )
    document = status_document(view)
    assert {c["id"]: c["meetings"] for c in document["controllers"]} == {
        "mc-1": ["quiet"],
        "mc-2": ["busy", "small"],  # busiest first, as the GC listed them
        "mc-3": [],
    }
    assert document["meetings"] == meetings
    assert (document["meetings_total"], document["meetings_complete"]) == (5, False)
    text = _text(view)
    assert "3 of 5 listed" in text
