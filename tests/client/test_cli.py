"""`darktower client` before it joins: a bad meeting id is refused on the spot (exit 2, one
line, no request to the GC), an unreachable GC exits 2 with the hint to start a fleet; and
`ClientSession`, which other programs use without that check, quotes the id in the GC's URL.

The joined terminal client itself (roster, changes, Ctrl-C) is in `test_client_session.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from darktower.cli_support import UNREACHABLE_HINT
from darktower.client.session import ClientSession, JoinRefused
from darktower.embedded.redis import free_port
from tests.client import InProcessFleet, in_process_fleet
from tests.faults.tcp_proxy import TcpProxy
from tests.support.cli import BAD_MEETING_IDS, invoke, invoke_in_thread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(tmp_path, redis_url) as started:
        yield started


async def test_bad_meeting_ids_exit_2_before_anything_is_sent(fleet: InProcessFleet) -> None:
    with TcpProxy("127.0.0.1", fleet.gc.http_port) as proxy:
        for meeting_id, reason in BAD_MEETING_IDS.items():
            result = await invoke_in_thread(
                "client", meeting_id, "--name", "Ada", "--gc-url", proxy.url
            )
            assert result.exit_code == 2, (meeting_id, result.output)
            assert result.stdout == ""
            assert result.stderr.startswith("darktower: invalid meeting id '"), result.stderr
            assert result.stderr.endswith(f"': {reason}\n"), result.stderr
            assert result.stderr.count("\n") == 1
        assert proxy.accepted == 0
        # The proxy is really in the way: a join through it reaches the GC.
        joined = await invoke_in_thread("join", "standup", "--gc-url", proxy.url)
        assert joined.exit_code == 0, joined.output
        assert proxy.accepted == 1


def test_an_unreachable_gc_exits_2_and_suggests_darktower_dev() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = invoke("client", "standup", "--name", "Ada", "--gc-url", url)
    assert result.exit_code == 2, result.output
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines()]  # no timestamps
    assert lines == [
        f"cannot join: cannot reach the GC at {url} (gc_unreachable)",
        UNREACHABLE_HINT,
    ]


# Not `..` (quoting leaves dots alone, the URL resolves them) nor `a/b` (the GC's router
# decodes `%2F` before matching): only the CLI's `check_meeting_id` keeps those out.
@pytest.mark.parametrize("meeting_id", ["a?b=c", "a#b", "a b", "%2e%2e"])
async def test_the_session_quotes_the_meeting_id_so_the_gc_judges_it(
    fleet: InProcessFleet, meeting_id: str
) -> None:
    # Unquoted, `a?b=c` would ask the GC about meeting `a` (404), `..` would leave the path.
    session = ClientSession(fleet.gc_url, meeting_id, display_name="Ada")
    try:
        with pytest.raises(JoinRefused) as refused:
            await session.join()
    finally:
        await session.aclose()
    assert refused.value.code == "http_400", str(refused.value)
