"""Pure parts of the fencing package: key names, generation parsing, script reply decoding."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from darktower.fencing.errors import FencedOut, FencingError, MalformedState
from darktower.fencing.keys import MeetingKeys
from darktower.fencing.port import MAX_GENERATION
from darktower.fencing.translate import decode_reply, parse_generation


def test_keys_of_a_meeting() -> None:
    keys = MeetingKeys.for_meeting("m-1")
    assert keys.all == (
        "meeting:{m-1}:gen",
        "meeting:{m-1}:owner",
        "meeting:{m-1}:mh",
        "meeting:{m-1}:state",
        "meeting:{m-1}:audit",
    )


@pytest.mark.parametrize("meeting_id", ["m-1", "A_b-9", "x" * 255, "0"])
def test_keys_of_one_meeting_share_a_cluster_slot(meeting_id: str) -> None:
    slots = {key_slot(key.encode()) for key in MeetingKeys.for_meeting(meeting_id).all}
    assert len(slots) == 1
    # and the slot is the one of the bare id, i.e. the hash tag is what Redis hashes
    assert slots == {key_slot(meeting_id.encode())}


@pytest.mark.parametrize("meeting_id", ["", "a{b", "a}b", "{m}", "}"])
def test_meeting_ids_that_would_break_the_hash_tag_are_refused(meeting_id: str) -> None:
    with pytest.raises(ValueError, match="meeting id"):
        MeetingKeys.for_meeting(meeting_id)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"1", 1),
        ("1764000000000000", 1764000000000000),
        (str(MAX_GENERATION).encode(), MAX_GENERATION),
        (str(MAX_GENERATION + 1).encode(), None),
        (b"abc", None),
        (b"-1", None),
        (b"1.5", None),
        (b" 12", None),
        (b"1_000", None),
        (b"", None),
        (b"12345678901234567", None),
        (b"\xff", None),
        (12, None),
    ],
)
def test_parse_generation(raw: object, expected: int | None) -> None:
    assert parse_generation(raw) == expected


def test_decode_ok_reply() -> None:
    assert decode_reply("m", [b"OK", b"1764000000000001"]) == 1764000000000001
    assert decode_reply("m", ["OK", "7"]) == 7


def test_decode_fenced_reply() -> None:
    with pytest.raises(FencedOut) as caught:
        decode_reply("m", [b"FENCED", b"42", b"mc-b"])
    assert (caught.value.meeting_id, caught.value.stored_generation) == ("m", 42)
    assert caught.value.stored_owner == "mc-b"
    assert caught.value.code == "fenced_out"
    with pytest.raises(FencedOut) as caught:
        decode_reply("m", [b"FENCED", None, None])
    assert (caught.value.stored_generation, caught.value.stored_owner) == (None, None)


def test_decode_malformed_reply() -> None:
    with pytest.raises(MalformedState) as caught:
        decode_reply("m", [b"MALFORMED", b"meeting:{m}:gen"])
    assert caught.value.key == "meeting:{m}:gen"
    assert caught.value.code == "malformed_state"


@pytest.mark.parametrize(
    "reply",
    [None, [], b"OK", [b"OK"], [b"OK", b"x"], [b"WHAT", b"1"], [b"FENCED", b"1"], [3, 4]],
)
def test_unexpected_replies_are_fencing_errors(reply: object) -> None:
    with pytest.raises(FencingError) as caught:
        decode_reply("m", reply)
    assert type(caught.value) is FencingError
