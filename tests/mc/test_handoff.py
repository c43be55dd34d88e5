"""The pure parts of live migration: what a frozen meeting does with each message, and the
drain report line `darktower roll` reads."""

from __future__ import annotations

import pytest

from darktower.auth.join_tokens import JoinClaims
from darktower.dev.roll import RollLine, drain_line
from darktower.mc.connection import ConnectionActor
from darktower.mc.meeting.handoff import FrozenAction, while_frozen
from darktower.mc.meeting.messages import (
    ClientFrame,
    ConnectionLost,
    EmptyExpired,
    EndMeeting,
    FlushUpdates,
    Freeze,
    GraceExpired,
    HandOff,
    JoinRequest,
    MeetingMessage,
    Thaw,
    Touch,
    UpdateMhs,
)
from darktower.mc.migration import DrainReport
from darktower.signaling.protocol import HostMute, Leave, Ping, SelfMute


async def _send(_frame: str) -> None:
    return None


CONNECTION = ConnectionActor("c-1", "p-1", _send)
CLAIMS = JoinClaims(
    meeting_id="m", user_id="ada", display_name="Ada", issuer="gc-1", expires_at=2_000_000_000
)


@pytest.mark.parametrize(
    ("message", "action"),
    [
        (JoinRequest(CLAIMS, CONNECTION), FrozenAction.REFUSE_JOIN),
        (ClientFrame(CONNECTION, Ping()), FrozenAction.APPLY),
        (ClientFrame(CONNECTION, Leave()), FrozenAction.CLOSE),
        (ConnectionLost(CONNECTION), FrozenAction.CLOSE),
        (ClientFrame(CONNECTION, SelfMute(muted=True)), FrozenAction.DROP),
        (ClientFrame(CONNECTION, HostMute(participant_id="p-2", muted=True)), FrozenAction.DROP),
        (Touch(), FrozenAction.DROP),
        (UpdateMhs(()), FrozenAction.DROP),
        (GraceExpired("p-1", 1), FrozenAction.DROP),
        (EmptyExpired(1), FrozenAction.DROP),
        (FlushUpdates(), FrozenAction.DROP),
        (EndMeeting("drained"), FrozenAction.END),
        (Freeze(), FrozenAction.FREEZE),
        (Thaw(), FrozenAction.THAW),
        (HandOff("ws://x/v1/signaling", ()), FrozenAction.HAND_OFF),
    ],
)
def test_what_a_frozen_meeting_does_with_each_message(
    message: MeetingMessage, action: FrozenAction
) -> None:
    assert while_frozen(message) is action


@pytest.mark.parametrize(
    ("log", "line"),
    [
        ("", None),
        ("drain: migrating 3 meetings\n", None),
        (
            "x drain: 3 migrated, 1 ended, 0 failed (9 clients redirected, longest hand-off"
            " 120 ms)",
            RollLine(3, 1, 0, 9, 120),
        ),
        (
            # Two lives in one log (a restarted MC): the last report counts.
            "drain: 1 migrated, 0 ended, 0 failed (2 clients redirected, longest hand-off 5 ms)\n"
            "drain: 2 migrated, 0 ended, 1 failed (4 clients redirected, longest hand-off 7 ms)\n",
            RollLine(2, 0, 1, 4, 7),
        ),
    ],
)
def test_roll_reads_the_last_drain_report_of_a_log(log: str, line: RollLine | None) -> None:
    assert drain_line(log) == line


def test_the_drain_report_line_is_what_roll_reads() -> None:
    report = DrainReport(migrated=["a", "b"], ended={"c": "all_at_capacity"}, redirected_clients=5)
    report.longest_handoff_s = 0.2504
    assert drain_line(f"drain: {report.summary()}") == RollLine(2, 1, 0, 5, 250)
