"""Rules of the tree's shape that a review would otherwise have to remember: no module of
`src/darktower` over 500 lines (generated stubs aside: one module, one concept); no test imports
from a `conftest.py` (what tests share lives in `tests/support/`); the README's Layout table
names every package of `src/darktower` (and every subpackage in its package's row), and only
paths that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGE = ROOT / "src" / "darktower"
README = ROOT / "README.md"
MAX_LINES = 500


def test_no_source_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    }
    assert len(sizes) > 100, "the package was not found"
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def conftest_imports(source: str) -> list[str]:
    """The modules named `conftest` (or inside one) that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found += [name for name in names if "conftest" in name.split(".")]
    return found


def test_no_test_imports_from_a_conftest() -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in conftest_imports(path.read_text(encoding="utf-8"))
    ]
    assert offences == []


@pytest.mark.parametrize(
    "source",
    [
        "from tests.mh.conftest import RunningJanus",
        "import tests.conftest",
        "from .conftest import x",
        "def f():\n    from tests.gc import conftest",
    ],
)
def test_every_kind_of_conftest_import_is_seen(source: str) -> None:
    assert conftest_imports(source)


def layout_rows() -> dict[str, str]:
    """The Layout table of the README: first cell → second cell."""
    section = README.read_text(encoding="utf-8").split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0]] = cells[1]
    return rows


def packages(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/__init__.py"))


def test_the_layout_names_every_package_and_subpackage() -> None:
    rows = layout_rows()
    missing = []
    for package in packages(PACKAGE):
        key = f"`src/darktower/{package.name}/`"
        if key not in rows:
            missing.append(key)
            continue
        for sub in packages(package):
            if f"`{sub.name}/" not in rows[key] and f"`{sub.name}`" not in rows[key]:
                missing.append(f"{key} row: `{sub.name}/`")
    assert missing == []


def test_every_path_the_layout_names_exists() -> None:
    named = [
        path
        for first in layout_rows()
        for path in re.findall(r"`([^`]+)`", first)
        if "/" in path or "." in path
    ]
    assert named, "the Layout table names no paths"
    absent = [
        path for path in named if not (ROOT / path).exists() and not (PACKAGE / path).exists()
    ]
    assert absent == []
