"""The README's `darktower mc`, `assign`, `token` and `gc` examples work as typed.

The commands are read from README.md (the first bash block of each section) and run by bash
in an empty directory, so the README cannot drift from what works. The only changes: the
listen addresses come from the environment (free loopback ports; the commands do not set
them), and the MC's Redis URL is this test run's Redis instead of database 0 of the default.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from darktower.auth.keys import load_trusted_keys
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier
from darktower.embedded.redis import free_port
from tests.support.readme import README, bash_block_after, bash_blocks_in, run_bash
from tests.support.services import START_TIMEOUT_S, ServiceProcess, darktower_env

pytestmark = pytest.mark.slow

README_REDIS_URL = "redis://127.0.0.1:6379/0"
STOP_TIMEOUT_S = 40.0  # the drain deadline is 30 s; with nothing hosted it takes well under 1 s


def key_lines() -> str:
    """The MC example's `darktower keys generate` lines (the GC example uses their keys)."""
    lines = bash_block("Running a Meeting Controller").splitlines()
    keys = [line for line in lines if line.startswith("darktower keys generate")]
    assert keys and lines[: len(keys)] == keys, lines
    return "\n".join(keys)


def bash_block(section: str) -> str:
    """The first ```bash block under the `## <section>` heading."""
    blocks = bash_blocks_in(f"## {section}")
    assert blocks, f"no bash block in {section!r}"
    return blocks[0]


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        yield started
    finally:
        for service in started:
            service.close()


def run_readme(
    script: str, env: dict[str, str], cwd: Path, live_url: str, services: list[ServiceProcess]
) -> None:
    """Run `script`; its last command must be the service (bash execs it): live, then
    SIGTERM, exit 0."""
    service = ServiceProcess.shell(script, darktower_env(env), cwd)
    services.append(service)
    service.wait_live(live_url)
    argv = service.command_line()
    assert "darktower" in " ".join(argv), argv
    assert service.terminate(STOP_TIMEOUT_S) == 0, service.log()


def test_the_readme_mc_example_runs_as_typed(
    tmp_path: Path, redis_url: str, services: list[ServiceProcess]
) -> None:
    script = bash_block("Running a Meeting Controller")
    assert README_REDIS_URL in script and "darktower mc" in script
    health = free_port()
    env = {
        "MC_GRPC_BIND": f"127.0.0.1:{free_port()}",
        "MC_CLIENT_BIND": f"127.0.0.1:{free_port()}",
        "MC_HEALTH_BIND": f"127.0.0.1:{health}",
    }
    run_readme(
        script.replace(README_REDIS_URL, redis_url),
        env,
        tmp_path,
        f"http://127.0.0.1:{health}/health/live",
        services,
    )


def test_the_readme_gc_example_runs_as_typed(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    # The GC example uses the keys made by the MC example's first commands.
    keys_line = key_lines()
    script = bash_block("Running a Global Controller")
    assert "darktower gc" in script
    http = free_port()
    env = {"GC_GRPC_BIND": f"127.0.0.1:{free_port()}", "GC_HTTP_BIND": f"127.0.0.1:{http}"}
    run_readme(
        f"{keys_line}\n{script}",
        env,
        tmp_path,
        f"http://127.0.0.1:{http}/health/live",
        services,
    )
    assert (tmp_path / "gc.db").exists()


def test_the_readme_assign_and_token_examples_run_as_typed(
    tmp_path: Path, redis_url: str, services: list[ServiceProcess]
) -> None:
    """The MC example runs, then the `darktower assign` block as typed against it (only the
    README's port 50052 becomes the MC's free port): the printed answer is the one the README
    shows. Then the token block: `$TOKEN` is a GC service token that an MC would accept."""
    mc_script = bash_block("Running a Meeting Controller")
    grpc, health = free_port(), free_port()
    env = {
        "MC_GRPC_BIND": f"127.0.0.1:{grpc}",
        "MC_CLIENT_BIND": f"127.0.0.1:{free_port()}",
        "MC_HEALTH_BIND": f"127.0.0.1:{health}",
    }
    mc = ServiceProcess.shell(
        mc_script.replace(README_REDIS_URL, redis_url), darktower_env(env), tmp_path
    )
    services.append(mc)
    mc.wait_live(f"http://127.0.0.1:{health}/health/live")

    assign_block = bash_block_after("Call it as the GC would")
    command, expected = assign_block.strip().splitlines()
    assert "127.0.0.1:50052" in command and expected.startswith("# ")
    assigned = run_bash(command.replace("127.0.0.1:50052", f"127.0.0.1:{grpc}"), tmp_path)
    assert assigned.returncode == 0, assigned.stderr
    assert json.loads(assigned.stdout) == json.loads(expected.removeprefix("# "))

    token_block = bash_block_after("passing a token from the CLI as metadata")
    printed = run_bash(f'{token_block}\nprintf "%s" "$TOKEN"', tmp_path)
    assert printed.returncode == 0, printed.stderr
    # What mc-1 runs: the GC keys of keys/gc, each bound to its GC, tokens for mc-1 only.
    verifier = TokenVerifier(
        load_trusted_keys([tmp_path / "keys" / "gc"]),
        required_scope=SCOPE_MC,
        allowed_callers=frozenset({ServiceType.GLOBAL_CONTROLLER}),
        audience="mc-1",
    )
    claims = verifier.verify(printed.stdout)
    assert claims.service_type is ServiceType.GLOBAL_CONTROLLER
    assert (claims.subject, claims.audience) == ("gc-1", ("mc-1",))
    assert mc.terminate(STOP_TIMEOUT_S) == 0, mc.log()


def test_the_readme_mh_sim_example_registers_with_the_readme_gc(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    """The GC example, then the `darktower mh-sim` line as typed (only the README's GC port
    50051 becomes the GC's free port): the MH registers in its zone."""
    keys_line = key_lines()
    grpc, http = free_port(), free_port()
    gc = ServiceProcess.shell(
        f"{keys_line}\n{bash_block('Running a Global Controller')}",
        darktower_env(
            {
                "GC_GRPC_BIND": f"127.0.0.1:{grpc}",
                "GC_HTTP_BIND": f"127.0.0.1:{http}",
                "GC_ALLOW_GUESTS": "true",  # the registry is read without a token below
            }
        ),
        tmp_path,
    )
    services.append(gc)
    gc.wait_live(f"http://127.0.0.1:{http}/health/live")
    match = re.search(r"`(darktower mh-sim [^`]*)`", README.read_text())
    assert match and "http://127.0.0.1:50051" in match.group(1)
    mh_dir = tmp_path / "mh"
    mh_dir.mkdir()
    (mh_dir / "keys").symlink_to(tmp_path / "keys")
    mh = ServiceProcess.shell(
        match.group(1).replace("http://127.0.0.1:50051", f"http://127.0.0.1:{grpc}"),
        darktower_env({}),
        mh_dir,
    )
    services.append(mh)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        handlers = httpx.get(f"http://127.0.0.1:{http}/v1/media-handlers", timeout=5).json()
        if [(h["id"], h["zone"]) for h in handlers] == [("mh-1", "zone-a")]:
            break
        assert mh.proc.poll() is None, mh.log()
        assert time.monotonic() < deadline, f"mh-1 never registered: {handlers}\n{mh.log()}"
        time.sleep(0.2)
    assert mh.terminate(STOP_TIMEOUT_S) == 0, mh.log()
