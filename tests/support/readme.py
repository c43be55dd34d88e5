"""The README's (and docs') shell blocks, read by the tests that run them as typed, and one way
to run such a block."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.services import darktower_env

__all__ = ["DOCS", "README", "bash_block_after", "bash_blocks_in", "run_bash"]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def bash_block_after(marker: str, path: Path = README) -> str:
    """The first ```bash block after `marker` (a heading or a phrase) in `path`."""
    text = path.read_text()
    match = _BLOCK.search(text[text.index(marker) :])
    assert match, f"no bash block after {marker!r} in {path.name}"
    return match.group(1)


def bash_blocks_in(heading: str, path: Path = README) -> list[str]:
    """Every ```bash block under `heading` (e.g. "## TLS", "### A short tour"), up to the next
    heading of its level or higher."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n")
    level = len(heading.split(" ", 1)[0])
    # "# " lines inside code blocks are comments, so only "## " and deeper count as headings.
    ends = [text.find(f"\n{'#' * n} ", start + 1) for n in range(2, level + 1)]
    ends = [i for i in ends if i != -1]
    return _BLOCK.findall(text[start : min(ends) if ends else None])


def run_bash(script: str, cwd: Path, *, strict: bool = False) -> subprocess.CompletedProcess[str]:
    """`script` through bash in `cwd` with the venv's `darktower` first on PATH (`strict`: stop
    at the first failing command, `bash -e`)."""
    return subprocess.run(
        ["bash", "-ec" if strict else "-c", script],
        env=darktower_env({}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
