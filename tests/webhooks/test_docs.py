"""docs/webhooks.md as typed: its bash block (a key, the receiver), and its Python and
JavaScript verification examples against signatures made by darktower."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from darktower.auth.api_keys import load_api_key_file
from darktower.embedded.redis import free_port
from darktower.webhooks.signature import SIGNATURE_HEADER, compute, sign
from tests.support.readme import DOCS, bash_blocks_in
from tests.support.services import ServiceProcess, darktower_env
from tests.support.waiting import wait_until

DOC = DOCS / "webhooks.md"
SECRET = "a-webhook-secret-for-the-docs-test-0123456789"
BODY = b'{"id":"evt_9","seq":3,"type":"participant_joined","meeting_id":"standup"}'


def code_block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"no {language} block in {DOC.name}"
    return match.group(1)


def cases() -> list[tuple[str, bytes, bool]]:
    now = int(time.time())
    old = now - 301
    return [
        (sign(SECRET, BODY), BODY, True),
        (sign(["another-secret-0123456789abcdefghijkl", SECRET], BODY), BODY, True),
        (sign(SECRET, BODY), BODY + b"\n", False),
        (sign("the-wrong-secret-0123456789abcdefghijkl", BODY), BODY, False),
        (f"t={old},v1={compute(SECRET, old, BODY)}", BODY, False),
        (f"t={now},v1={'0' * 64}", BODY, False),
        ("garbage", BODY, False),
    ]


def test_the_python_example_verifies_what_darktower_signs() -> None:
    namespace: dict[str, object] = {}
    exec(code_block("python"), namespace)  # noqa: S102 - the documentation's own example
    verify = namespace["verify"]
    assert callable(verify)
    for header, body, expected in cases():
        assert verify(SECRET, header, body) is expected, header


def test_the_javascript_example_verifies_what_darktower_signs(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js (Debian's nodejs) is needed to check the documentation's example"
    harness = code_block("javascript") + (
        "\nconst cases = JSON.parse(process.argv[2]);\n"
        "console.log(JSON.stringify(cases.map(([h, b]) => "
        "verify(process.argv[3], h, Buffer.from(b, 'base64')))));\n"
    )
    script = tmp_path / "verify.js"
    script.write_text(harness)
    import base64

    sent = [(h, base64.b64encode(b).decode()) for h, b, _ in cases()]
    run = subprocess.run(
        [node, str(script), json.dumps(sent), SECRET],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [expected for _, _, expected in cases()]


@pytest.mark.timeout(60)
def test_the_docs_commands_make_a_key_and_a_receiver_that_verifies(tmp_path: Path) -> None:
    (block,) = bash_blocks_in("## Verifying a request", DOC)
    port = free_port()
    # As typed, but on a free port (tests never take a fixed one).
    script = block.replace("--port 8099", f"--port {port}")
    assert script != block
    service = ServiceProcess.shell(script, darktower_env({}), tmp_path)
    try:
        wait_until(
            lambda: "listening on" in service.log(), timeout=40, what="the receiver listening"
        )
        key = load_api_key_file(tmp_path / "webhook-key.json")
        url = f"http://127.0.0.1:{port}/"
        good = httpx.post(url, content=BODY, headers={SIGNATURE_HEADER: sign(key.secret, BODY)})
        assert good.status_code == 204
        bad = httpx.post(url, content=BODY, headers={SIGNATURE_HEADER: sign(SECRET, BODY)})
        assert bad.status_code == 401
        wait_until(lambda: '"evt_9"' in service.log(), timeout=10, what="the event printed")
        printed = [line for line in service.log().splitlines() if line.startswith("{")]
        assert [json.loads(line)["id"] for line in printed] == ["evt_9"]
        assert key.secret not in service.log()
    finally:
        service.close()
