"""Two headless Chromium pages join one meeting through the fleet and receive each other's
video and audio through a real MH (Janus); the load reports follow the publishers; a page's
mute turns its outgoing audio off; a host-muted page that turns its microphone back on is not
heard (Janus drops its audio) until unmuted; killing the primary MH moves both pages to the
backup (the MC re-registers them there and sends each a `media_update`) and frames come again.

WebRTC must not use anything but this machine: the scenario (`tests.mh.media_scenario`) runs
in a network namespace of its own (`unshare --net`) with `lo` and a veth pair whose both ends
are inside it (Janus gathers no candidates on a loopback interface), so ICE has no route off
the namespace (as root a network namespace; otherwise `--map-root-user` makes one in a user
namespace). Skipped without chromium, janus or `unshare` on a developer's machine; never in CI
(`CI` set), where a missing one must fail the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMIUM
from tests.mh.media_scenario import NAMESPACE_SETUP
from tests.support.janus_client import JANUS
from tests.support.netns import missing_tools, run_isolated

_MISSING = missing_tools(("chromium", CHROMIUM.exists()), ("janus", JANUS is not None))
pytestmark = [
    pytest.mark.skipif(
        bool(_MISSING) and not os.environ.get("CI"),
        reason=f"missing: {', '.join(_MISSING)} (CI has them)",
    ),
    pytest.mark.timeout(300),
]


def test_two_pages_see_and_hear_each_other_and_survive_the_primary_mh(tmp_path: Path) -> None:
    result = run_isolated("tests.mh.media_scenario", tmp_path, setup=NAMESPACE_SETUP, timeout=280)
    assert "failed" not in result, result
    assert result["errors"] == []
    # Both pages on the primary, each receiving the other's video and audio.
    assert result["pages_on"] == [result["primary"]] * 2
    for stats in result["stats"]:
        assert stats["feeds"] == 1
        # The join answer's `ice_servers` (GC_ICE_SERVERS) are in the publisher's PeerConnection.
        assert stats["ice_urls"] == ["stun:127.0.0.1:3479"]
        assert stats["video_frames_decoded"] > 0 and stats["audio_bytes_received"] > 0
    assert result["tiles"] == [2, 2]  # one's own and the other's
    # Two publishers and two subscriptions in the primary's load report.
    assert result["primary_streams"] >= 4
    assert result["muted_track_enabled"] == [False]
    # A host mute is enforced by the MH: a page that turns its microphone back on is not heard.
    assert result["host_muted_audio_stopped"] and result["host_unmuted_audio_flows"]
    # The primary went away: both pages on the backup, frames again.
    backup = {"mh-1": "mh-2", "mh-2": "mh-1"}[result["primary"]]
    assert result["after_failover_on"] == [backup, backup]
    for stats in result["stats_after_failover"]:
        assert stats["video_frames_decoded"] > 0 and stats["audio_bytes_received"] > 0
        # Moved by the MC: each page took the new grants of a `media_update`.
        assert stats["updates"] >= 1
    print(f"kill to frames on both pages: {result['seconds_kill_to_frames']} s")
