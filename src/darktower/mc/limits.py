"""The MC's abuse limits, read from its settings (README "Limits" has the table).

Per meeting (`MeetingLimits`, enforced by each MeetingActor): MC_EMPTY_TIMEOUT_SECONDS,
MC_MAX_PARTICIPANTS_PER_MEETING, MC_STATE_COALESCE_SECONDS,
MC_ROSTER_BATCH_SECONDS. Per connection and per MC
(`ClientLimits`, enforced by the signaling edge): MC_MAX_CONNECTIONS, MC_CLIENT_MESSAGE_RATE,
MC_CLIENT_MESSAGE_BURST, MC_CLIENT_SEND_QUEUE.
"""

from __future__ import annotations

from darktower.mc.meeting import MeetingLimits
from darktower.mc.settings import McSettings
from darktower.mc.signaling_server import ClientLimits

__all__ = ["client_limits", "meeting_limits"]


def meeting_limits(settings: McSettings) -> MeetingLimits:
    return MeetingLimits(
        empty_timeout_seconds=settings.empty_timeout_seconds,
        max_participants=settings.max_participants_per_meeting,
        coalesce_seconds=settings.state_coalesce_seconds,
        roster_batch_seconds=settings.roster_batch_seconds,
    )


def client_limits(settings: McSettings) -> ClientLimits:
    return ClientLimits(
        max_connections=settings.max_connections,
        message_rate=settings.client_message_rate,
        message_burst=settings.client_message_burst,
        send_queue=settings.client_send_queue,
    )
