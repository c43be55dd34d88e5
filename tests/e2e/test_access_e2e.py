"""The access model on real processes (README "Access model", docs/applications.md): the
README's key and token commands as typed, a GC with guests off that admits a token holder as
host through a real MC, refuses the rest with nothing placed, reloads its API keys on SIGHUP,
and accepts the token the docs' Python example mints; the docs' JavaScript example, run by
Node.js with `jose` (Debian's node-jose, `scripts/install-tools.sh`), mints one the GC's
verifier accepts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from darktower.auth.access_tokens import AccessTokenVerifier, mint_access_token
from darktower.auth.api_keys import (
    ApiKeyRing,
    generate_api_key,
    load_api_key_file,
    write_api_key_file,
)
from darktower.dev.state import FleetRecord, StateDir
from tests.e2e.fleet import Fleet, GcProc, wait_until
from tests.support.readme import DOCS, bash_block_after, run_bash
from tests.support.services import darktower_env

DOC = DOCS / "applications.md"
# Real processes on a shared two-core machine: starting the fleet is the slow part.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_the_readme_and_docs_commands_run_as_typed(tmp_path: Path) -> None:
    """The README's block (key, host token, admin token) and the docs' shell lines, as typed."""
    script = bash_block_after("\n## Access model\n")
    shown = run_bash(script + 'printf "%s\\n%s\\n" "$TOKEN" "$ADMIN"\n', tmp_path, strict=True)
    assert shown.returncode == 0, shown.stderr
    key_file = tmp_path / "keys" / "api-key.json"
    key = load_api_key_file(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert shown.stdout.splitlines()[0] == key.key_id  # `create` prints the key id
    token, admin = shown.stdout.splitlines()[1:3]
    claims = jwt.decode(token, key.secret, algorithms=["HS256"])
    assert (claims["sub"], claims["name"], claims["role"], claims["meeting"]) == (
        "ada",
        "Ada Lovelace",
        "host",
        "standup",
    )
    assert jwt.decode(admin, key.secret, algorithms=["HS256"])["admin"] is True
    again = run_bash(script.splitlines()[0], tmp_path, strict=True)  # no overwrite without --force
    assert again.returncode == 2 and load_api_key_file(key_file) == key

    docs = run_bash(bash_block_after("Or from a shell", DOC), tmp_path, strict=True)
    assert docs.returncode == 0, docs.stderr
    host, ops = docs.stdout.splitlines()
    assert jwt.decode(host, key.secret, algorithms=["HS256"])["role"] == "host"
    assert jwt.decode(ops, key.secret, algorithms=["HS256"])["admin"] is True


def python_example() -> str:
    return docs_example("python")


def docs_example(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match
    return match.group(1)


# Where `import ... from "jose"` is found: Debian's node-jose (scripts/install-tools.sh installs
# it; CI runs that script), else a global npm install.
JOSE_DIRS = [Path("/usr/share/nodejs/jose"), Path("/usr/lib/node_modules/jose")]
NODE = shutil.which("node")
JOSE = next((d for d in JOSE_DIRS if (d / "package.json").is_file()), None)


@pytest.mark.skipif(
    (NODE is None or JOSE is None) and not os.environ.get("CI"),
    reason="node or jose missing: bash scripts/install-tools.sh (CI does)",
)
def test_the_docs_javascript_example_mints_a_token_the_gc_accepts(tmp_path: Path) -> None:
    """docs/applications.md's JavaScript block, as a Node.js module, with the `jose` it
    imports; the token it prints passes the GC's own verifier with the claims it says."""
    assert NODE is not None and JOSE is not None, "node or jose missing: scripts/install-tools.sh"
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "jose").symlink_to(JOSE)
    example = tmp_path / "mint.mjs"
    example.write_text(docs_example("javascript"))
    key_file = tmp_path / "api-key.json"
    key = generate_api_key()
    write_api_key_file(key_file, key)
    minted = subprocess.run(
        [NODE, str(example)],
        env={**os.environ, "DARKTOWER_API_KEY_FILE": str(key_file)},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    grant = AccessTokenVerifier(ApiKeyRing([key_file]).secret).verify(minted.stdout.strip())
    assert (grant.key_id, grant.identity, grant.name, grant.meeting_id, grant.role) == (
        key.key_id,
        "ada",
        "Ada Lovelace",
        "standup",
        "host",
    )
    assert grant.admin is False
    assert 3500 < grant.expires_at - time.time() <= 3605  # setExpirationTime("1h")
    assert key.secret not in minted.stdout


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_join(gc: GcProc, meeting: str, token: str | None, **body: Any) -> httpx.Response:
    headers = bearer(token) if token else {}
    return httpx.post(
        f"{gc.http_url}/v1/meetings/{meeting}/join", json=body or None, headers=headers, timeout=30
    )


def test_a_gc_without_guests_admits_token_holders_only(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key.json"
    key = generate_api_key()
    write_api_key_file(key_file, key)
    fleet.add_keys(mcs=["mc-1"], mhs=["mh-1"])
    gc = fleet.start_gc(database_url, GC_API_KEY_FILES=str(key_file), GC_ALLOW_GUESTS="false")
    fleet.start_mc(gc, "mc-1")
    fleet.start_mh_group(gc, {"mh-1": "zone-a"})
    admin = mint_access_token(key, identity="ops", meeting_id=None, admin=True)

    def fleet_up() -> bool:
        mcs = httpx.get(f"{gc.http_url}/v1/controllers", headers=bearer(admin), timeout=5)
        mhs = httpx.get(f"{gc.http_url}/v1/media-handlers", headers=bearer(admin), timeout=5)
        return any(c["health"] == "healthy" for c in mcs.json()) and bool(mhs.json())

    wait_until(fleet_up, timeout=60, what="mc-1 healthy and mh-1 reporting")

    # Refused, with nothing placed.
    assert post_join(gc, "class", None).status_code == 401
    other = mint_access_token(key, identity="ada", meeting_id="other")
    assert post_join(gc, "class", other).json()["reason"] == "wrong_meeting"
    stranger = mint_access_token(generate_api_key(), identity="ada", meeting_id="class")
    assert post_join(gc, "class", stranger).json()["reason"] == "unknown_key"
    ada = mint_access_token(key, identity="ada", meeting_id="class", name="Ada", role="host")
    assert post_join(gc, "class", ada, user_id="mallory").json()["reason"] == ("identity_mismatch")
    assert httpx.get(f"{gc.http_url}/v1/controllers", timeout=5).status_code == 401
    participant = httpx.get(f"{gc.http_url}/v1/controllers", headers=bearer(ada), timeout=5)
    assert participant.json()["reason"] == "admin_required"
    recent = httpx.get(f"{gc.http_url}/v1/placements/recent", headers=bearer(admin), timeout=5)
    assert [e for e in recent.json() if e["meeting_id"] == "class"] == []

    # Admitted: the GC's join token for the MC carries the token's identity, name and role.
    answer = post_join(gc, "class", ada)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["user_id"], body["display_name"], body["mc_id"]) == ("ada", "Ada", "mc-1")
    join_claims = jwt.decode(body["join_token"], options={"verify_signature": False})
    assert (join_claims["sub"], join_claims["role"]) == ("ada", "host")

    # Next to a dev fleet (its state record names the GC and the API key file), `darktower
    # join` and `darktower status` mint their own tokens: they pass a GC without guests.
    state = tmp_path / "dev-state"
    with StateDir(state) as records:
        records.publish(
            FleetRecord(
                os.getpid(), gc.http_url, time.time(), str(tmp_path), api_key_file=str(key_file)
            )
        )
    cli_env = darktower_env({"DARKTOWER_DEV_STATE": str(state)})
    cli_env.pop("DARKTOWER_GC_URL", None)
    cli_env.pop("DARKTOWER_ACCESS_TOKEN", None)
    joined = subprocess.run(
        [sys.executable, "-m", "darktower", "join", "seminar"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["user_id"].startswith("u-")
    status = subprocess.run(
        [sys.executable, "-m", "darktower", "status", "--json"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "mc-1" in status.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "darktower", "status", "--gc-url", gc.http_url, "--token", "junk"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "401" in refused.stderr
    # `darktower client` as well: with guests off, its join passes only with the token it
    # minted for --user-id, and the roster names that identity.
    client = subprocess.Popen(
        [sys.executable, "-m", "darktower", "client", "seminar", "--name", "Grace",
         "--user-id", "grace"],
        env={**cli_env, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    assert client.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(client.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("joined seminar" in line for line in lines) or client.poll() is not None,
            timeout=60,
            what="darktower client joined",
        )
        joined_line = next((line for line in lines if "joined seminar" in line), None)
        assert joined_line is not None and "as Grace" in joined_line, lines
        roster = httpx.get(
            f"{gc.http_url}/v1/meetings/seminar/participants", headers=bearer(admin), timeout=10
        )
        assert roster.status_code == 200, roster.text
        assert "grace" in {p["identity"] for p in roster.json()["participants"]}
        client.send_signal(signal.SIGINT)
        assert client.wait(timeout=30) == 0, lines
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        reader.join(timeout=10)
        client.stdout.close()
    # `darktower join --page`: the join page's address with a token minted with the dev key
    # for that meeting in its fragment; the GC admits that token (the page sends it so).
    shown = subprocess.run(
        [sys.executable, "-m", "darktower", "join", "seminar", "--page"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    address = urlsplit(shown.stdout.strip())
    assert f"{address.scheme}://{address.netloc}" == gc.http_url.rstrip("/")
    assert (address.path, parse_qs(address.query)) == ("/join", {"meeting": ["seminar"]})
    assert address.fragment.startswith("token=")
    page_token = address.fragment.removeprefix("token=")
    assert jwt.decode(page_token, key.secret, algorithms=["HS256"])["meeting"] == "seminar"
    assert post_join(gc, "seminar", page_token).status_code == 200
    # Without a dev fleet for that GC and without --token there is no token to put there.
    none = subprocess.run(
        [sys.executable, "-m", "darktower", "join", "seminar", "--page", "--gc-url",
         "http://127.0.0.1:9"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert none.returncode == 2 and "no access token" in none.stderr and not none.stdout

    # SIGHUP: a new key is trusted, the old one no longer.
    new_key = generate_api_key()
    write_api_key_file(key_file, new_key, force=True)
    gc.send_signal(signal.SIGHUP)
    fresh = mint_access_token(new_key, identity="bo", meeting_id="class")
    wait_until(
        lambda: post_join(gc, "class", fresh).status_code == 200,
        timeout=20,
        what="the reloaded key accepted",
    )
    assert post_join(gc, "class", ada).json()["reason"] == "unknown_key"
    assert key.secret not in gc.log() and new_key.secret not in gc.log()
    # A broken file on SIGHUP keeps the keys the GC has.
    key_file.write_text("broken")
    gc.send_signal(signal.SIGHUP)
    wait_until(lambda: "previous ones stay" in gc.log(), timeout=20, what="the reload refusal")
    assert post_join(gc, "class", fresh).status_code == 200
    gc.check_running()

    # The docs' Python example, run as a program with the new key, mints a token the GC takes.
    write_api_key_file(key_file, new_key, force=True)
    minted = subprocess.run(
        [sys.executable, "-c", python_example()],
        env={**os.environ, "DARKTOWER_API_KEY_FILE": str(key_file)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    example = post_join(gc, "standup", minted)
    assert example.status_code == 200, example.text
    assert (example.json()["user_id"], example.json()["display_name"]) == ("ada", "Ada Lovelace")
    assert json.loads(key_file.read_text())["key_id"] == new_key.key_id
