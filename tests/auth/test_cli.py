"""`darktower keys generate` and `darktower token`, in-process and as a real process."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from darktower.auth.keys import KEY_NAMES, load_public_keys, load_trusted_keys
from darktower.auth.tokens import (
    SCOPE_MC,
    SERVICE_PROFILES,
    ServiceClaims,
    ServiceType,
    TokenVerifier,
)
from darktower.cli import app

runner = CliRunner()


def verify_printed(token_output: str, pub: Path, service: str) -> ServiceClaims:
    service_type, scope = SERVICE_PROFILES[service]
    verifier = TokenVerifier(
        load_public_keys([pub]),
        required_scope=scope,
        allowed_callers={service_type},
        allow_unbound_keys=True,
    )
    return verifier.verify(token_output.strip())


def test_keys_generate_then_token_in_process(tmp_path: Path) -> None:
    generated = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)])
    assert generated.exit_code == 0, generated.output
    for name in KEY_NAMES:
        assert stat.S_IMODE((tmp_path / f"{name}.key").stat().st_mode) == 0o600
        assert (tmp_path / f"{name}.pub").is_file()

    for service in SERVICE_PROFILES:
        result = runner.invoke(
            app,
            [
                *("token", "--service", service, "--key", str(tmp_path / f"{service}.key")),
                *("--ttl", "60", "--issuer", f"{service}-7"),
            ],
        )
        assert result.exit_code == 0, result.output
        claims = verify_printed(result.stdout, tmp_path / f"{service}.pub", service)
        assert claims.issuer == f"{service}-7"
        assert claims.expires_at - claims.issued_at == 60


def test_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "gc.key").read_bytes()

    again = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)])

    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.output
    assert (tmp_path / "gc.key").read_bytes() == before
    forced = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path), "--force"])
    assert forced.exit_code == 0
    assert (tmp_path / "gc.key").read_bytes() != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "gc", "--key", "{dir}/absent.key"], "absent.key: key file not found"),
        (["--service", "gc", "--key", "{dir}/gc.pub"], "gc.pub: not an unencrypted PEM"),
        (["--service", "xx", "--key", "{dir}/gc.key"], "unknown service 'xx'"),
    ],
)
def test_token_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    assert runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)]).exit_code == 0

    result = runner.invoke(app, ["token", *(a.format(dir=tmp_path) for a in args)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "BEGIN" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow
def test_keys_and_token_as_a_real_process(tmp_path: Path) -> None:
    def darktower(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "darktower", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    generated = darktower("keys", "generate", "--out", str(tmp_path / "keys"))
    assert generated.returncode == 0, generated.stderr

    printed = darktower("token", "--service", "gc", "--key", str(tmp_path / "keys" / "gc.key"))
    assert printed.returncode == 0, printed.stderr
    claims = verify_printed(printed.stdout, tmp_path / "keys" / "gc.pub", "gc")
    assert claims.expires_at - claims.issued_at == 300

    missing = darktower("token", "--service", "gc", "--key", str(tmp_path / "nope.key"))
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.key'}: key file not found"


def test_keys_generate_for_one_instance_then_token_with_audience(tmp_path: Path) -> None:
    generated = runner.invoke(
        app, ["keys", "generate", "--out", str(tmp_path), "--service", "gc", "--id", "gc-1"]
    )
    assert generated.exit_code == 0, generated.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gc-1.key", "gc-1.pub"]
    assert stat.S_IMODE((tmp_path / "gc-1.key").stat().st_mode) == 0o600

    result = runner.invoke(
        app,
        [
            *("token", "--service", "gc", "--key", str(tmp_path / "gc-1.key")),
            *("--audience", "mc-1", "--ttl", "600"),
        ],
    )

    assert result.exit_code == 0, result.output
    verifier = TokenVerifier(
        load_trusted_keys([tmp_path / "gc-1.pub"]),
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience="mc-1",
        allow_unbound_keys=False,
    )
    claims = verifier.verify(result.stdout.strip())
    assert (claims.subject, claims.issuer, claims.audience) == ("gc-1", "gc-1", ("mc-1",))
    assert claims.expires_at - claims.issued_at == 600


def test_token_from_a_legacy_key_takes_its_sub_from_id(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(
        app, ["token", "--service", "mc", "--key", str(tmp_path / "mc.key"), "--id", "mc-4"]
    )
    assert result.exit_code == 0, result.output
    claims = verify_printed(result.stdout, tmp_path / "mc.pub", "mc")
    assert (claims.subject, claims.issuer) == ("mc-4", "mc-4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "gc", "--key", "{dir}/gc.key", "--ttl", "601"], "above the maximum"),
        (["--service", "gc", "--key", "{dir}/gc.key", "--ttl", "315360000"], "above the maximum"),
        (["--service", "gc", "--key", "{dir}/gc-1.key", "--id", "gc-2"], "bound to 'gc-1'"),
        (["--service", "mc", "--key", "{dir}/gc-1.key"], "another service than 'mc'"),
        (["--service", "gc", "--key", "{dir}/gc.key", "--audience", "mc 1"], "--audience"),
        (["--service", "gc", "--key", "{dir}/gc.key", "--id", "gc/1"], "--id"),
    ],
)
def test_token_refusals_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    assert runner.invoke(app, ["keys", "generate", "--out", str(tmp_path)]).exit_code == 0
    instance = ["keys", "generate", "--out", str(tmp_path), "--service", "gc", "--id", "gc-1"]
    assert runner.invoke(app, instance).exit_code == 0

    result = runner.invoke(app, ["token", *(a.format(dir=tmp_path) for a in args)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "mc"], "--service and --id go together"),
        (["--id", "mc-1"], "--service and --id go together"),
        (["--service", "xx", "--id", "x-1"], "unknown service 'xx'"),
        (["--service", "mc", "--id", "mc/1"], "letters"),
    ],
)
def test_keys_generate_for_one_instance_refusals(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
