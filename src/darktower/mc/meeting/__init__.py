"""A hosted meeting on the MC: one `MeetingActor` per meeting, child of the controller.

The actor holds the meeting's fencing lease and is the only writer of the meeting's Redis
state on this MC. Every write is fenced; a refused write (FencedOut) means another MC owns the
meeting now: the actor counts it (`mc_fenced_out_total`), tells each client it moved (a
`participant_left` with the client's own id, reason `moved`), and stops, releasing its
children. A Redis outage is not a loss of ownership: the actor keeps the meeting, carries on
from memory and rewrites the roster at the next touch that reaches Redis.

Participants (see `darktower.mc.roster` for the Redis layout and the host rule):

* `JoinRequest` admits a client: a new participant (refused when the MC is at its participant
  limit), or a reconnect (correlation id + binding token, checked by `SessionBinder`, and the
  fresh join token's user must be the participant's). A join without a resumable session by
  a user whose entry is disconnected takes that entry back (`roster.seat_to_reclaim`): the
  same participant id and host role, answered as a reconnect, no departure announced. The
  actor starts the client's ConnectionActor as its child and queues the `join_answer` on it
  before anything else.
* A connection that drops without `leave` (`ConnectionLost`) marks its participant
  disconnected; the participant stays for the grace period (a timer), then is removed
  (`participant_left`, reason `timeout`). `leave` removes at once (`voluntary`).
* When the last participant is gone for good, or nobody has been connected for the empty
  timeout (also a meeting nobody ever joined), the meeting ends (fenced delete; the
  controller reports it to the GC). `MeetingLimits` also caps the roster (`meeting_full`)
  and coalesces self_mute flips.
* On start — including after a failover to this MC — the roster is loaded from Redis; the old
  MC's participants are kept as disconnected with a fresh grace period, so that their clients
  can reconnect here with their binding tokens.

The modules, one concept each:

    messages.py      the mailbox: `MeetingMessage`, the union of what the actor is sent
    join.py          `decide_join`, the pure join/rejoin decision, and `JoinRefusal`
    sessions.py      the meeting's binding tokens: checking a reconnect's, minting new ones
    roster_sync.py   `RosterSync`, the fenced Redis writes of the roster
    grace.py         `GraceTimers`, how long a disconnected participant keeps its seat
    limits.py        `MeetingLimits`: empty timeout, participant cap, coalescing window
    fanout.py        `Connections`, the admitted connections and delivery to them
    participants.py  `Participants`, carrying out joins, client frames, disconnects, departures
    handoff.py       live migration: a frozen meeting, handed off to another MC or thawed
    actor.py         `MeetingActor`, which owns the meeting and wires the rest
"""

from __future__ import annotations

from darktower.mc.meeting.actor import LAST_PARTICIPANT_LEFT, MeetingActor
from darktower.mc.meeting.join import JoinRefusal
from darktower.mc.meeting.limits import EMPTY_TIMEOUT, MeetingLimits
from darktower.mc.meeting.messages import (
    ClientFrame,
    ConnectionLost,
    EndMeeting,
    JoinRequest,
    MeetingMessage,
    Touch,
    UpdateMhs,
)

__all__ = [
    "EMPTY_TIMEOUT",
    "LAST_PARTICIPANT_LEFT",
    "ClientFrame",
    "ConnectionLost",
    "EndMeeting",
    "JoinRefusal",
    "JoinRequest",
    "MeetingActor",
    "MeetingLimits",
    "MeetingMessage",
    "Touch",
    "UpdateMhs",
]
