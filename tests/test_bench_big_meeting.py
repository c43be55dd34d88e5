"""The big_meeting benchmark's clients share the parse of a roster frame (`_Parsed`), but each
learns only from the frames it received: sharing cannot make a client count ids it never got."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any, cast

from websockets.asyncio.client import ClientConnection

from bench.b_big_meeting import _Client, _collector_paused, _Parsed


def _participant(i: int) -> dict[str, Any]:
    return {
        "participant_id": f"p{i}",
        "user_id": f"u{i}",
        "display_name": f"User {i}",
        "muted": False,
        "host_muted": False,
        "connected": True,
    }


def _delta(ids: range, left: tuple[int, ...] = ()) -> bytes:
    frame = {
        "v": 1,
        "type": "roster_delta",
        "participants": [_participant(i) for i in ids],
        "left": [{"participant_id": f"p{i}", "reason": "voluntary"} for i in left],
        "host_id": "p0",
    }
    return json.dumps(frame, separators=(",", ":")).encode()


def _answer(me: int, ids: range) -> bytes:
    frame = {
        "v": 1,
        "type": "join_answer",
        "participant_id": f"p{me}",
        "correlation_id": f"c{me}",
        "binding_token": f"b{me}",
        "roster": [_participant(i) for i in ids],
        "host_id": "p0",
    }
    return json.dumps(frame, separators=(",", ":")).encode()


def _client(size: int, parsed: _Parsed) -> _Client:
    return _Client(cast(ClientConnection, None), size, parsed)


def test_a_shared_frame_counts_only_for_the_clients_that_received_it() -> None:
    parsed = _Parsed()
    first, second = _delta(range(2, 4)), _delta(range(4, 6))
    both, one = _client(6, parsed), _client(6, parsed)
    both.take(_answer(0, range(2)))
    one.take(_answer(1, range(2)))
    for frame in (first, second):
        both.take(bytes(frame))  # each client gets its own copy of the same bytes
    one.take(bytes(first))
    assert both.known == {f"p{i}" for i in range(6)} and both.full.is_set()
    assert one.known == {f"p{i}" for i in range(4)} and not one.full.is_set()
    assert one.full_at is None and both.frames == 3 and one.frames == 2


def test_departures_and_pongs() -> None:
    parsed = _Parsed()
    client = _client(3, parsed)
    client.sent["n1"] = 0.0
    client.take(_answer(0, range(2)))
    client.take(_delta(range(2, 3), left=(1,)))
    assert client.known == {"p0", "p2"} and not client.full.is_set()
    client.take(b'{"v":1,"type":"pong","nonce":"n1"}')
    assert client.sent == {} and len(client.pongs) == 1
    client.take(_delta(range(1, 2)))
    assert client.full.is_set()


def test_the_runner_collects_no_cycles_during_a_storm_and_after_it_does() -> None:
    assert gc.isenabled()
    with _collector_paused():
        assert not gc.isenabled()
        cycle: list[object] = []
        cycle.append(cycle)
        ref = weakref.ref(_Cycle(cycle))
    assert gc.isenabled()
    assert ref() is None  # collected when the storm is over


class _Cycle:
    def __init__(self, payload: object) -> None:
        self.me = self
        self.payload = payload
