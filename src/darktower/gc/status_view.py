"""What `darktower status` shows: the fleet as a GC's read API answers it, either as tables
that fit an 80-column terminal or as one JSON document.

Pure functions over the API's JSON (`GET /v1/controllers`, `GET /v1/media-handlers`,
`GET /v1/meetings`): the CLI fetches, this module shapes. Ids are never cut with an ellipsis:
a cell too long for its column wraps (`overflow="fold"`); only the list of meetings an MC
hosts is abbreviated, to the ids that fit on its line and a count of the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["FleetView", "abbreviate", "age", "renderables", "status_document"]


@dataclass(frozen=True, slots=True)
class FleetView:
    """The GC's answers, as they came: `controllers` and `media_handlers` are the lists of
    their endpoints, `meetings` the `meetings` of `GET /v1/meetings` (busiest first) and
    `meetings_total` its `total` (more than `len(meetings)` when the list was cut)."""

    gc_url: str
    controllers: Sequence[Mapping[str, Any]]
    media_handlers: Sequence[Mapping[str, Any]]
    meetings: Sequence[Mapping[str, Any]]
    meetings_total: int

    def hosted(self) -> dict[str, list[str]]:
        """MC id → the ids of the meetings it hosts, busiest first."""
        by_mc: dict[str, list[str]] = {}
        for meeting in self.meetings:
            by_mc.setdefault(str(meeting["mc_id"]), []).append(str(meeting["meeting_id"]))
        return by_mc

    @property
    def complete(self) -> bool:
        """Whether `meetings` holds every live meeting of the GC's region."""
        return len(self.meetings) >= self.meetings_total


def status_document(view: FleetView) -> dict[str, Any]:
    """`darktower status --json`: each controller as the API gives it plus `meetings` (the ids
    it hosts), the media handlers as given, and every listed meeting with its MC."""
    hosted = view.hosted()
    return {
        "gc_url": view.gc_url,
        "controllers": [{**c, "meetings": hosted.get(str(c["id"]), [])} for c in view.controllers],
        "media_handlers": [dict(h) for h in view.media_handlers],
        "meetings": [dict(m) for m in view.meetings],
        "meetings_total": view.meetings_total,
        "meetings_complete": view.complete,
    }


def age(seconds: float | None) -> str:
    """A heartbeat age in at most five characters: `0.4s`, `42s`, `12m`, `3h`, `2d`, `never`."""
    if seconds is None:
        return "never"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def abbreviate(ids: Sequence[str], width: int) -> str:
    """`ids` joined by commas in at most `width` characters: all of them if they fit, else as
    many as fit before `+N more` for the rest (the first id is always shown, even when
    longer); `-` for none."""
    if not ids:
        return "-"
    everything = ", ".join(ids)
    if len(everything) <= width:
        return everything
    shown: list[str] = []
    used = 0
    for i, meeting_id in enumerate(ids):
        piece = len(meeting_id) + (2 if shown else 0)
        tail = len(f", +{len(ids) - i - 1} more")
        if shown and used + piece + tail > width:
            break
        shown.append(meeting_id)
        used += piece
    rest = len(ids) - len(shown)
    return ", ".join(shown) + (f", +{rest} more" if rest else "")


def _section(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Group:
    """A bold title line (wrapped to the terminal, not to the table), then the table."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not str: an endpoint or region holding `[...]` is shown, not read as markup.
        table.add_row(*(Text(str(value)) for value in row))
    return Group(Text(title, style="bold"), table, Text(""))


def renderables(view: FleetView, width: int = 80) -> list[RenderableType]:
    """What `darktower status` prints on a terminal `width` columns wide: the MCs, the
    meetings each hosts (on one line per MC when the ids are short enough), the MHs (if any).

    The region column is left out when every MC and MH is in one region (named in the first
    title instead)."""
    regions = {str(c["region"]) for c in view.controllers}
    regions |= {str(h["region"]) for h in view.media_handlers}
    one_region = len(regions) <= 1
    where = f" · region {next(iter(regions))}" if one_region and regions else ""
    region: list[str] = [] if one_region else ["region"]

    def regional(row: Mapping[str, Any]) -> list[object]:
        return [] if one_region else [row["region"]]

    out: list[RenderableType] = [
        _section(
            f"meeting controllers · {view.gc_url}{where}",
            ["id", *region, "health", "meetings", "participants", "beat", "gRPC"],
            [
                [
                    c["id"],
                    *regional(c),
                    c["health"],
                    f"{c['current_meetings']}/{c['max_meetings']}",
                    f"{c['current_participants']}/{c['max_participants']}",
                    age(c["heartbeat_age_s"]),
                    c["grpc_endpoint"],
                ]
                for c in view.controllers
            ],
        )
    ]

    listed = "" if view.complete else f", {len(view.meetings)} of {view.meetings_total} listed"
    hosted = view.hosted()
    id_width = max([len("MC"), *(len(str(c["id"])) for c in view.controllers)])
    room = max(width - id_width - 3, 20)  # the rest of the line after the MC and a gap
    out.append(
        _section(
            f"meetings by MC (busiest first{listed})",
            ["MC", "meetings"],
            [[c["id"], abbreviate(hosted.get(str(c["id"]), []), room)] for c in view.controllers],
        )
    )

    if view.media_handlers:
        out.append(
            _section(
                "media handlers",
                ["id", *region, "zone", "health", "streams"],
                [
                    [
                        h["id"],
                        *regional(h),
                        h["zone"] or "-",
                        h["health"],
                        f"{h['current_streams']}/{h['max_streams']}",
                    ]
                    for h in view.media_handlers
                ],
            )
        )
    return out
