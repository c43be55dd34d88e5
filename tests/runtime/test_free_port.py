"""`free_port` within `DARKTOWER_PORT_RANGE` (the test command gives each concurrent pytest
session a range of its own): only ports of the range, never one that is taken, each in turn
before any comes again; a malformed range is refused with the setting's name."""

from __future__ import annotations

import socket

import pytest

from darktower.embedded.redis import PORT_RANGE_ENV, free_port


def _listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_ports_come_from_the_range_in_turn_and_skip_a_taken_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = free_port()  # kernel-picked: the range below starts somewhere free
    low = max(1024, min(base, 65000))
    taken = _listening(low + 1)
    try:
        monkeypatch.setenv(PORT_RANGE_ENV, f"{low}-{low + 3}")
        picked = [free_port() for _ in range(6)]
    finally:
        taken.close()
    assert set(picked) <= {low, low + 2, low + 3}, picked
    assert len(set(picked[:3])) == 3, picked  # each once before any repeats


@pytest.mark.parametrize("value", ["20000", "a-b", "30000-20000", "80-90", "65000-70000"])
def test_a_malformed_range_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(PORT_RANGE_ENV, value)
    with pytest.raises(ValueError, match=PORT_RANGE_ENV):
        free_port()


def test_without_the_setting_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PORT_RANGE_ENV, raising=False)
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # it was free
