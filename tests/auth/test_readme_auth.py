"""The README's service-authentication commands run as typed: the bash block after
"**Service authentication**" makes gc-1's bound key pair and a GC token for mc-1 only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from darktower.auth.errors import AuthenticationFailed
from darktower.auth.keys import load_trusted_keys
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier
from tests.support.readme import bash_block_after

pytestmark = pytest.mark.slow


def auth_block() -> str:
    return bash_block_after("**Service authentication**")


def verifier(audience: str) -> TokenVerifier:
    return TokenVerifier(
        load_trusted_keys([Path("keys")]),
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience=audience,
        allow_unbound_keys=False,
    )


def test_the_readme_key_and_token_commands_run_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = auth_block()
    assert "darktower keys generate" in script and "darktower token" in script
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "darktower").write_text(f'#!/bin/sh\nexec {sys.executable} -m darktower "$@"\n')
    (bin_dir / "darktower").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()

    done = subprocess.run(
        ["bash", "-euc", script],
        cwd=work,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (work / "keys").iterdir()) == ["gc-1.key", "gc-1.pub"]
    *_, key_line, pub_line, token = done.stdout.strip().splitlines()
    assert (key_line, pub_line) == ("keys/gc-1.key", "keys/gc-1.pub")
    monkeypatch.chdir(work)
    claims = verifier("mc-1").verify(token)
    assert (claims.subject, claims.audience) == ("gc-1", ("mc-1",))
    assert claims.expires_at - claims.issued_at == 300
    with pytest.raises(AuthenticationFailed) as info:
        verifier("mc-2").verify(token)
    assert info.value.reason == "wrong_audience"
