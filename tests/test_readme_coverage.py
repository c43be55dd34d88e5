"""Every shell block of the README (and of docs/) is run by a test, as typed.

The tests that run them read each block from the document (`tests.support.readme`), so the
document cannot drift from what works. This guards the other direction: a block nobody runs.
`RUN_BY` names, for each block, how its test finds it (the very call the test makes, checked to
be in the test's file) and the test; every block of the documents must be reached by one
locator, and every locator must reach a block. The README's first two commands are run by
`.ci/run` (the core-only install's smoke and the test command) and pinned here to stay exactly
what a new user types.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.readme import DOCS, README, bash_block_after, bash_blocks_in

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"
APPLICATIONS = DOCS / "applications.md"
WEBHOOKS = DOCS / "webhooks.md"
_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)

FIRST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/darktower dev"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && bash scripts/test.sh"


@dataclass(frozen=True)
class Run:
    """A block's locator, exactly as its test calls it, and that test (`file::function`)."""

    call: str
    test: str


# Blocks whose every line is a line of another block that a test runs (same command, shown in
# two places); the test named runs it in the other place.
SAME_LINES = {
    (APPLICATIONS, "## API keys"): Run(
        'bash_block_after("\\n## Access model\\n")',
        "tests/e2e/test_access_e2e.py::test_the_readme_and_docs_commands_run_as_typed",
    ),
}

RUN_BY = [
    Run(
        'bash_blocks_in("### A short tour")',
        "tests/dev/test_dev_failures.py::test_the_tour_kill_9_the_host_and_the_meeting_moves",
    ),
    Run(
        'bash_block("Running a Meeting Controller")',
        "tests/test_readme_commands.py::test_the_readme_mc_example_runs_as_typed",
    ),
    Run(
        'bash_block_after("Call it as the GC would")',
        "tests/test_readme_commands.py::test_the_readme_assign_and_token_examples_run_as_typed",
    ),
    Run(
        'bash_block_after("passing a token from the CLI as metadata")',
        "tests/test_readme_commands.py::test_the_readme_assign_and_token_examples_run_as_typed",
    ),
    Run(
        'bash_block("Running a Global Controller")',
        "tests/test_readme_commands.py::test_the_readme_gc_example_runs_as_typed",
    ),
    Run(
        'bash_block_after("\\n## Access model\\n")',
        "tests/e2e/test_access_e2e.py::test_the_readme_and_docs_commands_run_as_typed",
    ),
    Run(
        'bash_block_after("\\n## Application API\\n")',
        "tests/e2e/test_meetings_cli_e2e.py::test_the_readme_meeting_commands_run_as_typed",
    ),
    Run(
        'bash_blocks_in("## TLS")',
        "tests/tls/test_readme_tls.py::test_the_readme_tls_gc_and_status_run_as_typed",
    ),
    Run(
        'bash_block_after("**Service authentication**")',
        "tests/auth/test_readme_auth.py::test_the_readme_key_and_token_commands_run_as_typed",
    ),
    Run(
        'bash_blocks_in("## Rolling upgrades")',
        "tests/dev/test_roll.py::test_a_rolling_restart_of_three_mcs_under_30_clients_ends_no_meeting",
    ),
    Run(
        'bash_blocks_in("## Deploying")',
        "tests/deploy/test_kubernetes.py::test_both_render_and_every_dev_object_validates",
    ),
    Run(
        'bash_blocks_in("## Capacity planning (simulator)")',
        "tests/sim/test_readme_sim.py::test_the_readme_simulator_commands_run_as_typed",
    ),
    Run(
        'bash_block_after("Or from a shell", DOC)',
        "tests/e2e/test_access_e2e.py::test_the_readme_and_docs_commands_run_as_typed",
    ),
    Run(
        'bash_blocks_in("## Verifying a request", DOC)',
        "tests/webhooks/test_docs.py::test_the_docs_commands_make_a_key_and_a_receiver_that_verifies",
    ),
]


def bash_block(section: str) -> str:
    """tests/test_readme_commands.py's own helper: the first block under `## <section>`."""
    return bash_blocks_in(f"## {section}")[0]


def every_block() -> dict[str, list[str]]:
    """Each document with shell blocks -> its blocks, in order."""
    found = {}
    for path in [README, *sorted(DOCS.rglob("*.md"))]:
        blocks = _BLOCK.findall(path.read_text())
        if blocks:
            found[str(path.relative_to(ROOT))] = blocks
    return found


def _reached(run: Run) -> list[str]:
    call = run.call.replace('bash_block("', 'bash_block_readme("')
    names = {
        "bash_blocks_in": bash_blocks_in,
        "bash_block_after": bash_block_after,
        "bash_block_readme": bash_block,
        "DOC": WEBHOOKS if "webhooks" in run.test else APPLICATIONS,
    }
    found = eval(call, {"__builtins__": {}}, names)  # noqa: S307 (the literals above)
    return found if isinstance(found, list) else [found]


def _defines(path: Path, function: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
        for node in tree.body
    )


def test_the_first_two_commands_are_what_a_new_user_types_and_ci_runs_them() -> None:
    text = README.read_text()
    first, second = _BLOCK.findall(text)[:2]
    assert text.index(first) < 200, "the first command opens the README"
    assert (first.strip(), second.strip()) == (FIRST_COMMAND, TEST_COMMAND)
    ci = CI.read_text()
    # The first: a fresh venv with the core install only, then `darktower dev` in the smoke.
    assert 'python3 -m venv "$core_venv"' in ci
    assert re.search(r'pip install .*"\$wheels"/darktower-\*\.whl\n', ci), ci
    assert 'timeout 300 "$core_venv/bin/python" scripts/smoke_core_install.py' in ci
    # The second, as typed (the venv and its dev install, then the test command).
    assert "python3 -m venv .venv\n" in ci
    assert ".venv/bin/python -m pip install --quiet -e '.[dev]'\n" in ci
    assert ci.rstrip().endswith("bash scripts/test.sh")


@pytest.mark.parametrize("run", RUN_BY, ids=lambda run: run.call)
def test_each_locator_is_the_call_its_test_makes(run: Run) -> None:
    file, function = run.test.split("::")
    path = ROOT / file
    assert _defines(path, function), run.test
    assert run.call in path.read_text(), f"{file} no longer calls {run.call}"
    assert _reached(run), run.call


def unrun_blocks(documents: dict[str, list[str]], runs: list[Run]) -> list[str]:
    """The blocks of `documents` that no run of `runs` reaches (nor SAME_LINES covers), each
    named by its document and number."""
    reached = [block for run in runs for block in _reached(run)]
    first_two = _BLOCK.findall(README.read_text())[:2]
    by_lines = []
    for (path, heading), run in SAME_LINES.items():
        (block,) = bash_blocks_in(heading, path)
        (other,) = _reached(run)
        assert set(block.splitlines()) <= set(other.splitlines()), (path, heading)
        by_lines.append(block)
    return [
        f"{doc}: block {i + 1}:\n{block}"
        for doc, blocks in documents.items()
        for i, block in enumerate(blocks)
        if block not in reached and block not in by_lines and block not in first_two
    ]


def test_every_shell_block_of_the_documents_is_run_by_a_test() -> None:
    documents = every_block()
    assert len(documents["README.md"]) >= 15 and "docs/webhooks.md" in documents
    missing = unrun_blocks(documents, RUN_BY)
    assert missing == [], "no test runs:\n" + "\n".join(missing)


def test_a_block_no_test_runs_is_named() -> None:
    """The check fails on a block added without a test, and on a test that stops reading
    its block."""
    documents = every_block()
    documents["README.md"] = [*documents["README.md"], "darktower frobnicate\n"]
    assert unrun_blocks(documents, RUN_BY) == [
        f"README.md: block {len(documents['README.md'])}:\ndarktower frobnicate\n"
    ]
    without_roll = [run for run in RUN_BY if "Rolling upgrades" not in run.call]
    [missing] = unrun_blocks(every_block(), without_roll)
    assert missing.startswith("README.md: block ") and "darktower roll" in missing
