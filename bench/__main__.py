"""`python -m bench`: run the benchmarks, write one JSON per benchmark, print one table.

Options: `--smoke` (tiny sizes, results in a temporary directory unless `--results`, targets
not judged), `--only NAME ...`, `--results DIR` (default `bench/results`), `--asyncio` (every
process on asyncio's own loop; by default on uvloop, as the services), `--profile DIR` (py-spy
on the servers of `assign` and `join` in an extra, unmeasured pass), `--strict` (exit 1 when a
target is missed), `--workdir DIR` (keep the service logs and databases there).
Exit status: 0, or 1 when a benchmark failed to run (or, with `--strict`, missed a target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from rich.console import Console

from bench import (
    b_assign,
    b_big_meeting,
    b_failover,
    b_fenced,
    b_heartbeat,
    b_herding,
    b_join,
    b_migration,
    b_participants,
    b_scale,
    b_scaleout,
)
from bench.context import REPO_ROOT, BenchContext
from bench.results import BenchResult, git_sha, render_table, write_result
from darktower.auth.keys import generate_key_files
from darktower.runtime.event_loop import EventLoop, loop_factory

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        b_assign,
        b_fenced,
        b_join,
        b_heartbeat,
        b_scale,
        b_scaleout,
        b_failover,
        b_herding,
        b_migration,
        b_participants,
        b_big_meeting,
    )
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, targets not judged")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("--results", type=Path, help="where <name>.json go")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument(
        "--asyncio", dest="uvloop", action="store_false", help="asyncio's loop, not uvloop"
    )
    loops.add_argument("--uvloop", dest="uvloop", action="store_true", help="uvloop (default)")
    parser.set_defaults(uvloop=True)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy profiles here")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed target")
    parser.add_argument(
        "--workdir", type=Path, help="keep keys, databases and service logs here (kept)"
    )
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace, console: Console) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    names = args.only or list(BENCHMARKS)
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dt-bench-")))
        results_dir = args.results
        if results_dir is None:
            if args.smoke:
                results_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            else:
                results_dir = REPO_ROOT / "bench" / "results"
        generate_key_files(workdir / "keys")
        ctx = BenchContext(
            smoke=args.smoke,
            uvloop=args.uvloop,
            results_dir=results_dir,
            workdir=workdir,
            profile_dir=args.profile,
        )
        context = {"smoke": args.smoke, "uvloop": args.uvloop, "python": sys.version.split()[0]}
        results: list[BenchResult] = []
        for name in names:
            module = BENCHMARKS[name]
            timeout = module.TIMEOUT_S[1 if args.smoke else 0]
            console.print(f"[bold]{name}[/bold] …")
            started = time.perf_counter()
            result = BenchResult(name)
            try:
                await asyncio.wait_for(module.run(ctx, result), timeout)
            except TimeoutError:
                result.error = f"timed out after {timeout:.0f} s (figures so far kept)"
            except Exception as exc:
                console.print(traceback.format_exc(), markup=False)
                result.error = f"{type(exc).__name__}: {exc}"
            result.seconds = time.perf_counter() - started
            path = write_result(result, results_dir, judge=ctx.judge, context=context)
            console.print(f"  {name}: {result.seconds:.1f} s → {path}")
            results.append(result)
        console.print(render_table(results, judge=ctx.judge))
        console.print(f"results in {results_dir} (git {git_sha() or '?'})")
    if any(r.error is not None for r in results):
        return 1
    if args.strict and any(r.passed(ctx.judge) is False for r in results):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=140)
    factory = loop_factory(EventLoop.UVLOOP if args.uvloop else EventLoop.ASYNCIO)
    if args.uvloop and factory is None:
        console.print("uvloop is not installed: running on asyncio's loop")
        args.uvloop = False
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_all(args, console))


if __name__ == "__main__":
    sys.exit(main())
