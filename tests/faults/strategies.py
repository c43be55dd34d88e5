"""Hypothesis strategies for every request message of the three gRPC services
(docs/wire-protocol.md).

`request_strategy(message)` walks the message's descriptor, so a field added to the proto is
fuzzed without touching this file. Each field has two strategies, chosen by its name
(`_NAMED`: ids, endpoints, regions and zones, percents) or else by its type:

* plausible — a value the servers should accept (a short id, an `https://` URL, a defined
  enum number, a count > 0, a percent in [0, 100], a present sub-message, one to three list
  elements with distinct ids);
* wild — anything the wire can carry: strings with NUL, controls, bidi overrides, combining
  marks, U+10FFFF, braces (a Redis hash tag), quotes, and now and then huge ones (256 bytes,
  64 KiB, 1 MiB, just under and just over the 4 MiB gRPC message limit); integer edges
  (0, 2**31, 2**32-1); undefined enum numbers (5, 99, -1, 2**31-1, -2**31); NaN, ±inf,
  -0.0 and out-of-range floats; an unset sub-message (`capacity` missing); empty, duplicate or
  huge lists (10 000 elements).

Each field is wild with probability 1/`WILD_ONE_IN`, so a good share of requests are fully
valid (the accept path and its state changes get checked too) and most invalid ones are
wrong in one or two fields, deep in the message, past the first validation. Shrinking goes
toward plausible, so a failure is reported with the one field that matters.

Strings are always valid UTF-8: protobuf refuses surrogates before anything is sent, so they
are left out. Huge strings repeat a drawn seed: hypothesis cannot draw megabytes.
`oversized_request` builds a message of each type that is certainly over the limit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "GRPC_MESSAGE_LIMIT",
    "HUGE_LIST_SIZE",
    "HUGE_STRING_SIZES",
    "SERVICES",
    "UNKNOWN_ENUM_NUMBERS",
    "message_class",
    "oversized_request",
    "request_strategy",
    "strings",
]

GRPC_MESSAGE_LIMIT = 4 * 1024 * 1024
"""gRPC's default largest received message; the servers keep it."""

HUGE_STRING_SIZES = (256, 64 * 1024, 1024 * 1024, GRPC_MESSAGE_LIMIT - 1024, GRPC_MESSAGE_LIMIT + 1)
HUGE_ONE_IN = 20
"""About one wild string in this many is huge."""
HUGE_LIST_SIZE = 10_000
MAX_HUGE_LIST_ELEMENT_BYTES = 1024
WILD_ONE_IN = 4
"""About one field in this many gets a wild value."""

UNKNOWN_ENUM_NUMBERS = (5, 99, -1, 2**31 - 1, -(2**31))
UINT32_EDGES = (0, 1, 2**31 - 1, 2**31, 2**32 - 1)
UINT64_EDGES = (0, 1, 2**31, 2**63, 2**64 - 1)
FLOAT_EDGES = (math.nan, math.inf, -math.inf, -0.0, -1.0, 100.0, 100.01, 3.4e38, -3.4e38, 1e-45)
WEIRD_CHARACTERS = (
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\n", "\r", "\t", " ", "\u00a0", "\u0301",
    "\u200b", "\u2028", "\u202e", "\ufeff", "\ufffd", "\uffff", "\U0001f4a5", "\U0010ffff",
    "{", "}", "%", "'", '"', "\\", "/", ":", "@", "*", "$", "é",
)  # fmt: skip

SERVICES = tuple(pb.DESCRIPTOR.services_by_name.values())
"""GlobalControllerService, MeetingControllerService, MediaHandlerRegistryService."""

# --- strings -------------------------------------------------------------------------------

_characters = st.one_of(
    st.sampled_from(WEIRD_CHARACTERS),
    st.characters(exclude_categories=["Cs"]),  # any code point UTF-8 can carry
)
_short_text = st.text(_characters, max_size=40)
_plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_id_text = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)


@st.composite
def _huge_text(draw: st.DrawFn) -> str:
    seed = draw(st.text(_characters, min_size=1, max_size=4))
    size = draw(st.sampled_from(HUGE_STRING_SIZES))
    # Sizes count UTF-8 bytes, roughly: the message limit is about bytes.
    count = size * len(seed) // len(seed.encode("utf-8")) or 1
    return (seed * (count // len(seed) + 1))[:count]


@st.composite
def _strings(draw: st.DrawFn) -> str:
    if draw(st.integers(0, HUGE_ONE_IN - 1)) == HUGE_ONE_IN - 1:
        return draw(_huge_text())
    return draw(_short_text)


def strings() -> st.SearchStrategy[str]:
    """Any string: short and strange mostly, huge rarely."""
    return _strings()


# --- plausible and wild values -------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    plausible: st.SearchStrategy[Any]
    wild: st.SearchStrategy[Any]


def _ids(known: Sequence[str]) -> _Field:
    plausible = st.one_of(st.sampled_from(known), _id_text) if known else _id_text
    boundary = st.sampled_from(["", "a" * 255, "a" * 256, "é" * 128, "mc-1 ", "{x}"])
    return _Field(plausible, st.one_of(boundary, strings()))


_ENDPOINT = _Field(
    plausible=st.builds(
        "{}://{}{}{}".format,
        st.sampled_from(["http", "https"]),
        st.sampled_from(["mh-1.example", "10.0.0.7", "[::1]", "a", "x" * 200]),
        st.sampled_from(["", ":1", ":4433", ":65535"]),
        st.sampled_from(["", "/", "/path?q=1"]),
    ),
    wild=st.one_of(
        st.sampled_from(
            [
                "",
                "mh-1.example:4433",
                "ftp://mh-1.example",
                "http://",
                "https://:4433",
                "http://user:pw@mh-1.example",
                "http://mh-1.example:99999",
                "http://mh-1.example:-1",
                "http://[::1",
                "http://mh 1.example",
                "http://mh-1.example\n",
                "http://\x00",
                "javascript:alert(1)",
                "http://" + "x" * 250,
            ]
        ),
        strings(),
    ),
)
_REGION = _Field(
    plausible=st.sampled_from(["test", "local", "eu-west-1", "r" * 50]),
    wild=st.one_of(st.sampled_from(["", "r" * 51, "é" * 25, "é" * 26, "a\x00b"]), strings()),
)
_PERCENT = _Field(
    plausible=st.floats(0, 100, width=32),
    wild=st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(width=32)),
)


def _uints(bits: int) -> _Field:
    edges = UINT32_EDGES if bits == 32 else UINT64_EDGES
    return _Field(
        st.integers(1, 1000), st.one_of(st.sampled_from(edges), st.integers(0, 2**bits - 1))
    )


def _ints(bits: int) -> _Field:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return _Field(
        st.integers(1, 1000), st.one_of(st.sampled_from((0, -1, low, high)), st.integers(low, high))
    )


def _enums(enum: EnumDescriptor) -> _Field:
    defined = st.sampled_from([value.number for value in enum.values])
    return _Field(defined, st.one_of(st.sampled_from(UNKNOWN_ENUM_NUMBERS), defined))


_STRING = _Field(_plain_text, strings())
_BY_TYPE: Mapping[int, Callable[[], _Field]] = {
    FieldDescriptor.TYPE_STRING: lambda: _STRING,
    FieldDescriptor.TYPE_BYTES: lambda: _Field(
        _plain_text.map(str.encode), strings().map(lambda s: s.encode("utf-8"))
    ),
    FieldDescriptor.TYPE_BOOL: lambda: _Field(st.booleans(), st.booleans()),
    FieldDescriptor.TYPE_UINT32: lambda: _uints(32),
    FieldDescriptor.TYPE_FIXED32: lambda: _uints(32),
    FieldDescriptor.TYPE_UINT64: lambda: _uints(64),
    FieldDescriptor.TYPE_FIXED64: lambda: _uints(64),
    FieldDescriptor.TYPE_INT32: lambda: _ints(32),
    FieldDescriptor.TYPE_SINT32: lambda: _ints(32),
    FieldDescriptor.TYPE_SFIXED32: lambda: _ints(32),
    FieldDescriptor.TYPE_INT64: lambda: _ints(64),
    FieldDescriptor.TYPE_SINT64: lambda: _ints(64),
    FieldDescriptor.TYPE_SFIXED64: lambda: _ints(64),
    FieldDescriptor.TYPE_FLOAT: lambda: _PERCENT,
    FieldDescriptor.TYPE_DOUBLE: lambda: _Field(st.floats(0, 100), st.floats()),
}

_ID_FIELDS = frozenset(
    {"id", "controller_id", "handler_id", "meeting_id", "mh_id", "requesting_gc_id"}
)


def _named(field: FieldDescriptor, known_ids: Sequence[str]) -> _Field | None:
    """The strategies for a field by its name, or None to go by its type."""
    name = field.name
    if field.type == FieldDescriptor.TYPE_STRING:
        if name in _ID_FIELDS:
            return _ids(known_ids)
        if name.endswith("endpoint"):
            return _ENDPOINT
        if name in ("region", "zone"):
            return _REGION
    if field.type == FieldDescriptor.TYPE_FLOAT and name.endswith("_percent"):
        return _PERCENT
    return None


# --- messages ------------------------------------------------------------------------------


def message_class(descriptor: Descriptor) -> type[Message]:
    """The generated class of a message descriptor."""
    return GetMessageClass(descriptor)


def _distinct_ids(messages: list[Message]) -> list[Message]:
    """`messages` with their id fields suffixed by their index (plausible lists hold no
    duplicate ids)."""
    for index, message in enumerate(messages):
        for field in message.DESCRIPTOR.fields:
            if field.name in _ID_FIELDS and field.type == FieldDescriptor.TYPE_STRING:
                setattr(message, field.name, f"{getattr(message, field.name)}-{index}")
    return messages


@st.composite
def _huge_list(draw: st.DrawFn, element: st.SearchStrategy[Any]) -> list[Any]:
    one = draw(element)
    size = one.ByteSize() if isinstance(one, Message) else len(str(one))
    # Ten thousand copies of a huge element would be gigabytes: keep the list short then.
    return [one] * (HUGE_LIST_SIZE if size <= MAX_HUGE_LIST_ELEMENT_BYTES else 1)


def _field(field: FieldDescriptor, known_ids: tuple[str, ...]) -> _Field:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        single = _Field(_message(field.message_type, known_ids), st.nothing())
    elif field.type == FieldDescriptor.TYPE_ENUM:
        single = _enums(field.enum_type)
    else:
        single = _named(field, known_ids) or _BY_TYPE[field.type]()
    if field.is_repeated:
        plausible = st.lists(single.plausible, min_size=1, max_size=3)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            plausible = plausible.map(_distinct_ids)
        element = st.one_of(single.plausible, single.wild)
        wild = st.one_of(
            st.lists(element, max_size=4),  # empty, duplicates, wild elements
            st.lists(single.plausible, min_size=17, max_size=20),  # just over the MC's 16
            _huge_list(element),
        )
        return _Field(plausible, wild)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _Field(single.plausible, st.none())  # None: the sub-message stays unset
    return single


@st.composite
def _build(draw: st.DrawFn, cls: type[Message], fields: tuple[tuple[str, _Field], ...]) -> Message:
    values: dict[str, Any] = {}
    for name, strategies in fields:
        wild = draw(st.integers(0, WILD_ONE_IN - 1)) == WILD_ONE_IN - 1
        value = draw(strategies.wild if wild else strategies.plausible)
        if value is not None:
            values[name] = value
    return cls(**values)


@functools.cache
def _message(descriptor: Descriptor, known_ids: tuple[str, ...]) -> st.SearchStrategy[Message]:
    fields = tuple((f.name, _field(f, known_ids)) for f in descriptor.fields)
    return _build(message_class(descriptor), fields)


def request_strategy(
    message: type[Message] | Descriptor, known_ids: Sequence[str] = ()
) -> st.SearchStrategy[Message]:
    """Messages of this type drawn as the module docstring says; plausible ids are sometimes
    one of `known_ids` (so that heartbeats reach a registered peer)."""
    descriptor = message if isinstance(message, Descriptor) else message.DESCRIPTOR
    return _message(descriptor, tuple(known_ids))


def oversized_request(descriptor: Descriptor) -> Message:
    """A message of this type over the gRPC message limit: its first string field, or else
    its first repeated message field, made huge. ValueError if it has neither."""
    cls = message_class(descriptor)
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            return cls(**{field.name: "x" * (GRPC_MESSAGE_LIMIT + 1)})
    for field in descriptor.fields:
        if field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE:
            element = message_class(field.message_type)(
                **{
                    f.name: "x" * 1024
                    for f in field.message_type.fields
                    if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated
                }
            )
            return cls(**{field.name: [element] * (GRPC_MESSAGE_LIMIT // 1024 + 1)})
    raise ValueError(f"{descriptor.full_name} has no field that can be made huge")
