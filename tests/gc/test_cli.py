"""`darktower join` and `darktower status` against a real GC: a fleet in the test's loop (GC,
MCs, a simulated MH on loopback), the commands run in-process (CliRunner, in a worker thread)
and once as real processes.

Bad meeting ids are refused before any byte goes to the GC: the GC's HTTP port is reached
through a counting TCP proxy (`tests.faults.tcp_proxy`), and its placement log stays as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from darktower.cli_support import UNREACHABLE_HINT
from darktower.embedded.redis import free_port
from darktower.gc.http import MAX_MEETINGS_LIMIT
from darktower.gc.http_client import MEETINGS_LIMIT, gc_error_line
from tests.client import InProcessFleet, in_process_fleet
from tests.faults.tcp_proxy import TcpProxy
from tests.support.cli import BAD_MEETING_IDS, invoke, invoke_in_thread

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(tmp_path, redis_url, mcs=2, mhs=2) as started:
        yield started


async def _recent(gc_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        response = await http.get(f"{gc_url}/v1/placements/recent")
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def test_bad_meeting_ids_exit_2_and_nothing_reaches_the_gc(fleet: InProcessFleet) -> None:
    before = await _recent(fleet.gc_url)
    with TcpProxy("127.0.0.1", fleet.gc.http_port) as proxy:
        for meeting_id, reason in BAD_MEETING_IDS.items():
            result = await invoke_in_thread("join", meeting_id, "--gc-url", proxy.url)
            assert result.exit_code == 2, (meeting_id, result.output)
            assert result.stdout == ""
            line = result.stderr.strip()
            assert line.startswith("darktower: invalid meeting id '"), line
            assert line.endswith(f"': {reason}"), line
            assert len(line.splitlines()) == 1, line  # a newline in the id is shown escaped
        assert proxy.accepted == 0
        assert await _recent(fleet.gc_url) == before

        # The same path with a good id does reach the GC: the proxy is really in the way.
        joined = await invoke_in_thread("join", "good_id-1", "--gc-url", proxy.url)
        assert joined.exit_code == 0, joined.output
        assert json.loads(joined.stdout)["meeting_id"] == "good_id-1"
        assert proxy.accepted == 1
    assert [e["meeting_id"] for e in await _recent(fleet.gc_url)] == ["good_id-1"]


def test_the_page_size_asked_for_is_the_gcs_largest() -> None:
    assert MEETINGS_LIMIT == MAX_MEETINGS_LIMIT


@pytest.mark.parametrize("command", [("join", "standup"), ("status",), ("status", "--json")])
def test_an_unreachable_gc_exits_2_and_suggests_darktower_dev(command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = invoke(*command, "--gc-url", url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"darktower: cannot reach the GC at {url} (ConnectError)",
        f"darktower: {UNREACHABLE_HINT}",
    ]
    assert "darktower dev" in UNREACHABLE_HINT and "--gc-url" in UNREACHABLE_HINT


def test_a_password_in_the_gc_url_is_not_printed() -> None:
    port = free_port()
    result = invoke("status", "--gc-url", f"http://ops:S3cret-pw@127.0.0.1:{port}")
    assert result.exit_code == 2
    assert "S3cret-pw" not in result.output and "ops" not in result.output
    assert f"cannot reach the GC at http://127.0.0.1:{port} " in result.stderr


async def _join(fleet: InProcessFleet, meeting_id: str) -> str:
    result = await invoke_in_thread("join", meeting_id, "--gc-url", fleet.gc_url)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["meeting_id"] == meeting_id
    return str(answer["mc_id"])


async def test_status_fits_80_columns_and_shows_the_meetings_each_mc_hosts(
    fleet: InProcessFleet,
) -> None:
    meetings = [f"standup-{i}" for i in range(12)] + ["quarterly_planning-review-2025"]
    hosts: dict[str, list[str]] = {}
    for meeting_id in meetings:
        hosts.setdefault(await _join(fleet, meeting_id), []).append(meeting_id)

    as_json = await invoke_in_thread("status", "--json", "--gc-url", fleet.gc_url)
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    controllers = {c["id"]: c for c in document["controllers"]}
    assert set(controllers) == {"mc-1", "mc-2"}
    for mc_id, controller in controllers.items():
        assert sorted(controller["meetings"]) == sorted(hosts.get(mc_id, []))
        assert controller["health"] == "healthy"
    assert {h["id"] for h in document["media_handlers"]} == {"mh-1", "mh-2"}
    assert {m["meeting_id"]: m["mc_id"] for m in document["meetings"]} == {
        meeting_id: mc_id for mc_id, ids in hosts.items() for meeting_id in ids
    }
    assert document["meetings_total"] == len(meetings) and document["meetings_complete"]

    result = await invoke_in_thread("status", "--gc-url", fleet.gc_url, columns=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert too_long == [], "\n".join(too_long)
    assert "…" not in result.stdout  # nothing cut with an ellipsis
    assert fleet.gc_url in lines[0] and "region test" in lines[0]
    # One region: named in the title, no region column.
    assert ["id", "health", "meetings", "participants", "beat", "gRPC"] in [
        line.split() for line in lines
    ]
    for mc_id, controller in controllers.items():
        row = next(line for line in lines if line.lstrip().startswith(f"{mc_id} "))
        assert "healthy" in row and "/100 " in row  # meetings against the MC's limit
        assert controller["grpc_endpoint"] in row  # whole, not folded

    # Each MC's row of "meetings by MC" is one line: the busiest meetings that fit, and a
    # count of the rest. 13 meetings on 2 MCs: one MC has 7, which do not fit in 80 columns.
    hosted_rows = lines[lines.index(next(x for x in lines if "meetings by MC" in x)) :]
    abbreviated = 0
    for mc_id in controllers:
        ids = hosts.get(mc_id, [])
        row = next(line for line in hosted_rows if line.lstrip().startswith(f"{mc_id} "))
        listed = re.findall(r"standup-\d+|quarterly_planning-review-2025", row)
        assert set(listed) <= set(ids) and len(listed) == len(set(listed)), (mc_id, row)
        rest = len(ids) - len(listed)
        if rest:
            abbreviated += 1
            assert row.rstrip().endswith(f", +{rest} more"), row
        elif not ids:
            assert row.split() == [mc_id, "-"], row
    assert abbreviated >= 1


async def test_status_as_a_real_process_on_an_80_column_terminal(
    fleet: InProcessFleet,
) -> None:
    mc_id = await _join(fleet, "standup")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKTOWER_GC")}
    for args in (("status",), ("status", "--json")):
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "darktower", *args, "--gc-url", fleet.gc_url),
            env={**env, "COLUMNS": "80"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        text = out.decode()
        if args == ("status",):
            assert max(len(line) for line in text.splitlines()) <= 80
            assert re.search(rf"^ ?{mc_id} +standup *$", text, re.MULTILINE), text
        else:
            hosted = {c["id"]: c["meetings"] for c in json.loads(text)["controllers"]}
            assert hosted[mc_id] == ["standup"]


async def test_gc_errors_are_one_readable_line_and_exit_1(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    async with in_process_fleet(tmp_path, redis_url, mcs=0, mhs=1) as empty:
        result = await invoke_in_thread("join", "standup", "--gc-url", empty.gc_url)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    line = result.stderr.strip()
    assert re.fullmatch(r"darktower: GC answered 503: none_registered — \S.*", line), line
    assert "{" not in line and '"' not in line


@pytest.mark.parametrize(
    ("status_code", "body", "line"),
    [
        (
            503,
            b'{"error": "unavailable", "reason": "all_at_capacity", "message": "every MC is full"}',
            "GC answered 503: all_at_capacity — every MC is full",
        ),
        (
            400,
            b'{"error": "invalid_argument", "reason": "meeting_id", '
            b'"message": "meeting_id: must be letters"}',
            "GC answered 400: meeting_id: must be letters",
        ),
        (404, b'{"detail": "Not Found"}', "GC answered 404: Not Found"),
        (502, b"<html>Bad Gateway</html>\n", "GC answered 502: <html>Bad Gateway</html>"),
        (500, b"", "GC answered 500: (no body)"),
        (503, b'{"message": "line\\nbreak"}', "GC answered 503: line\\nbreak"),
        (418, b'["a list"]', 'GC answered 418: ["a list"]'),
    ],
)
def test_gc_error_line(status_code: int, body: bytes, line: str) -> None:
    assert gc_error_line(status_code, body) == line
