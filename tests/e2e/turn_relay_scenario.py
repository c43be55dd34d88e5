"""Chromium gathers a TURN relay candidate from a real coturn with the credentials the GC mints
(tests/e2e/test_ice_turn.py runs this inside `unshare --net`, a namespace with only `lo`, so
nothing but loopback is reachable).

`python -m tests.e2e.turn_relay_scenario DIR` starts `turnserver` on 127.0.0.1 (files in DIR),
then, in one headless Chromium page, builds RTCPeerConnections with `iceTransportPolicy:
"relay"` from `ice_servers` exactly as a join answer serializes them (`IceServers`, the GC's
code, through the answer's pydantic model) — once as minted, once with a forged credential, once
with an expired username — and prints one JSON line: the candidate types each gathered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from darktower.gc.http import IceServerOut
from darktower.gc.ice import IceServers
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.coturn import start_turnserver

SECRET = "Relay-Scenario-5b9d"
PORT = 3478

GATHER = """async (iceServers) => {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
  const found = [];
  const errors = [];
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  const done = new Promise((resolve) => {
    pc.onicecandidate = (e) => {
      if (e.candidate) found.push(e.candidate.type + " " + e.candidate.address);
      else resolve();
    };
    setTimeout(resolve, 8000);
  });
  pc.createDataChannel("probe");
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  pc.close();
  return { candidates: found, errors };
}"""


def _answer_json(ice: IceServers, identity: str) -> list[dict[str, Any]]:
    """`ice_servers` as a join answer carries them (JSON, nulls included)."""
    return [
        IceServerOut(urls=list(s.urls), username=s.username, credential=s.credential).model_dump()
        for s in ice.for_participant(identity)
    ]


async def _gather() -> dict[str, Any]:
    urls = (f"stun:127.0.0.1:{PORT}", f"turn:127.0.0.1:{PORT}?transport=udp")
    minted = _answer_json(IceServers(urls, secret=SECRET.encode(), ttl_seconds=600), "ada")
    forged = json.loads(json.dumps(minted))
    forged[1]["credential"] = base64.b64encode(b"\x00" * 20).decode()
    old = f"{int(time.time()) - 5}:ada"
    mac = hmac.new(SECRET.encode(), old.encode(), hashlib.sha1).digest()
    expired = json.loads(json.dumps(minted))
    expired[1]["username"], expired[1]["credential"] = old, base64.b64encode(mac).decode()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, "--allow-loopback-in-peer-connection"],
            headless=True,
        )
        try:
            page = await browser.new_page()
            await page.set_content("<!doctype html><title>relay</title>")
            return {
                name: await page.evaluate(GATHER, servers)
                for name, servers in (("minted", minted), ("forged", forged), ("expired", expired))
            }
        finally:
            await browser.close()


def main() -> None:
    turn = start_turnserver(Path(sys.argv[1]), secret=SECRET, port=PORT, relay_ports=(49160, 49200))
    try:
        result = asyncio.run(_gather())
    finally:
        turn.kill()
        turn.wait(timeout=10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
