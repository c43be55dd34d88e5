"""`settle_heap`: what a started service holds leaves the collector's scans; the collector
stays on for what comes after. Each case runs in a fresh interpreter (freezing the test
process would exempt the other tests' objects)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from darktower.runtime.heap import FULL_COLLECTION_EVERY
from tests.support.readme import ROOT


def _run(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_settled_heap_leaves_the_full_collections_and_cycles_are_still_collected() -> None:
    seen = _run(
        """
        import gc, json, weakref
        from darktower.runtime.heap import settle_heap

        startup = [{"n": [i]} for i in range(100_000)]  # what a service holds for good
        gc.collect()
        before = len(gc.get_objects(generation=2))
        frozen = settle_heap()
        after = len(gc.get_objects(generation=2))

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the start
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        print(json.dumps({"before": before, "after": after, "frozen": frozen,
                          "cycle_left": gone() is not None, "enabled": gc.isenabled(),
                          "kept": len(startup), "thresholds": gc.get_threshold()}))
        """
    )
    assert seen["before"] > 200_000  # the startup objects were scanned by every full collection
    assert seen["frozen"] >= seen["before"] and seen["after"] < 1_000
    assert seen["enabled"] and not seen["cycle_left"]
    assert seen["kept"] == 100_000
    assert seen["thresholds"] == [700, 10, FULL_COLLECTION_EVERY]  # young ones as CPython's


def test_serve_until_signalled_settles_the_heap_once_the_start_is_over() -> None:
    seen = _run(
        """
        import asyncio, gc, json
        from darktower.runtime.serving import serve_until_signalled

        seen = {}

        async def main():
            signalled = asyncio.Event()

            async def start():
                seen["at_start"] = gc.get_freeze_count()
                asyncio.get_running_loop().call_soon(signalled.set)

            async def stop():
                seen["at_stop"] = gc.get_freeze_count()

            await serve_until_signalled(start, stop, signalled=signalled)

        asyncio.run(main())
        print(json.dumps(seen))
        """
    )
    assert seen["at_start"] == 0 and seen["at_stop"] > 10_000
