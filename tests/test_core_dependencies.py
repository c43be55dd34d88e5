"""Every module darktower imports at run time is installed by `pip install .` (no extras).

A new user's `pip install -e .` once gave a `darktower` whose every command died with
`ModuleNotFoundError: No module named 'httpx'`: the CLI imported it, only the `dev` extra
installed it. This reads every import of `src/darktower` (no process, no install: it fails in
the ordinary test run, before `.ci/run`'s core-only install does) and holds each to one rule:

* a runtime import is provided by a core dependency (`[project] dependencies`), or by a package
  a core dependency itself requires (`THROUGH`, each checked against the installed metadata);
* an import guarded by `except ImportError` is optional, and some extra provides it;
* an import under `if TYPE_CHECKING:` is not made at run time.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "darktower"

# Imported directly, installed by the core dependency named (which requires it).
THROUGH = {"starlette": "fastapi", "pydantic-core": "pydantic"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalize(match.group(0))


@dataclass(frozen=True)
class Project:
    core: frozenset[str]
    extras: dict[str, frozenset[str]]


def project(pyproject: Path = ROOT / "pyproject.toml") -> Project:
    table = tomllib.loads(pyproject.read_text())["project"]
    return Project(
        frozenset(requirement_name(r) for r in table["dependencies"]),
        {
            extra: frozenset(requirement_name(r) for r in requirements)
            for extra, requirements in table.get("optional-dependencies", {}).items()
        },
    )


@dataclass(frozen=True)
class Import:
    module: str
    where: str  # path (from the directory above src/) and line
    optional: bool  # inside a `try` whose handler catches ImportError


def _catches_import_error(node: ast.Try) -> bool:
    names: list[str] = []
    for handler in node.handlers:
        kinds = handler.type
        elements = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
        names += [e.id for e in elements if isinstance(e, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _visit(node: ast.AST, optional: bool, label: str, own: str) -> Iterator[Import]:
    if isinstance(node, ast.If) and _is_type_checking(node):
        for statement in node.orelse:
            yield from _visit(statement, optional, label, own)
        return
    if isinstance(node, ast.Try) and _catches_import_error(node):
        for statement in node.body:
            yield from _visit(statement, True, label, own)
        rest: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
        for other in rest:
            yield from _visit(other, optional, label, own)
        return
    modules: list[str] = []
    if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        modules = [node.module]
    for module in modules:
        top = module.split(".")[0]
        if top not in sys.stdlib_module_names and top != own:
            yield Import(module, f"{label}:{getattr(node, 'lineno', 0)}", optional)
    for child in ast.iter_child_nodes(node):
        yield from _visit(child, optional, label, own)


def third_party_imports(source: Path, own: str = "darktower") -> Iterator[Import]:
    """Every absolute import of a module outside the standard library and `own`."""
    for path in sorted(source.rglob("*.py")):
        label = str(path.relative_to(source.parents[1]))
        yield from _visit(ast.parse(path.read_text(), str(path)), False, label, own)


@cache
def _module_index() -> dict[str, frozenset[str]]:
    """Importable name ("google.protobuf", "jwt") -> the installed distributions providing it,
    from their file lists: the first two levels of every package, so that namespace packages
    (google, opentelemetry) resolve to the distribution of the subpackage imported."""
    index: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if (
                not parts
                or parts[0].endswith((".dist-info", ".egg-info", ".data"))
                or (parts[0] in ("..", "__pycache__"))
            ):
                continue
            stems = [parts[0].removesuffix(".py").split(".")[0]]
            if len(parts) > 2 or (len(parts) == 2 and parts[1].endswith(".py")):
                stems.append(f"{stems[0]}.{parts[1].removesuffix('.py').split('.')[0]}")
            for stem in stems:
                index.setdefault(stem, set()).add(name)
    return {module: frozenset(names) for module, names in index.items()}


def providers(module: str) -> frozenset[str]:
    """The distributions that provide `module` (its own name when none is installed here:
    an optional package the dev venv lacks, such as uvloop)."""
    index = _module_index()
    parts = module.split(".")
    for key in (".".join(parts[:2]), parts[0]):
        if key in index:
            return index[key]
    return frozenset({normalize(parts[0])})


def _requires(parent: str) -> set[str]:
    return {requirement_name(r) for r in metadata.requires(parent) or () if "extra ==" not in r}


def violations(
    imports: Iterator[Import] | list[Import], deps: Project, through: dict[str, str]
) -> list[str]:
    """One line per import a core-only install would not satisfy (or no extra provides)."""
    found = []
    in_extras = frozenset().union(*deps.extras.values())
    for imported in imports:
        where = imported.where
        dists = providers(imported.module)
        if imported.optional:
            if not dists & (in_extras | deps.core):
                found.append(f"{where}: optional `{imported.module}` is in no extra")
            continue
        ok = dists & deps.core or any(
            through.get(d) in deps.core and d in _requires(through[d]) for d in dists
        )
        if not ok:
            found.append(
                f"{where}: `import {imported.module}` ({', '.join(sorted(dists))}) "
                "is not a core dependency"
            )
    return found


def test_every_runtime_import_of_darktower_is_a_core_dependency() -> None:
    imports = list(third_party_imports(SOURCE))
    assert len(imports) > 100, "the scan found the imports"
    assert {"httpx", "grpc", "fastapi"} <= {i.module.split(".")[0] for i in imports}
    assert violations(imports, project(), THROUGH) == []


def test_the_packages_imported_through_a_core_dependency_are_required_by_it() -> None:
    core = project().core
    for child, parent in THROUGH.items():
        assert parent in core, parent
        assert child in _requires(parent), (child, parent)


def _tree(tmp_path: Path, code: str) -> Path:
    package = tmp_path / "src" / "darktower"
    package.mkdir(parents=True)
    (package / "module.py").write_text(code)
    return package


@pytest.mark.parametrize(
    ("code", "flagged"),
    [
        # The bug the new user hit: the CLI's HTTP client only in the dev extra.
        ("import httpx\n", "`import httpx` (httpx) is not a core dependency"),
        # A dev-only package imported at module level, plain or from a function.
        ("import yaml\n", "`import yaml` (pyyaml) is not a core dependency"),
        ("def f():\n    from matplotlib import pyplot\n", "`import matplotlib`"),
        # Guarded, but no extra provides it.
        ("try:\n    import nosuchpackage\nexcept ImportError:\n    pass\n", "in no extra"),
        # Caught, but not as an ImportError: still a runtime import.
        ("try:\n    import yaml\nexcept ValueError:\n    pass\n", "`import yaml`"),
    ],
)
def test_an_import_a_core_install_lacks_is_named(tmp_path: Path, code: str, flagged: str) -> None:
    deps = project()
    without_httpx = Project(deps.core - {"httpx"}, deps.extras | {"dev": frozenset({"httpx"})})
    found = violations(list(third_party_imports(_tree(tmp_path, code))), without_httpx, THROUGH)
    assert len(found) == 1 and flagged in found[0], found
    assert found[0].startswith("src/darktower/module.py:"), found


@pytest.mark.parametrize(
    "code",
    [
        "import grpc\nfrom google.protobuf import message\nimport jwt\n",
        "try:\n    import uvloop\nexcept ImportError:\n    uvloop = None\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import yaml\n",
        "from starlette.requests import Request\n",  # installed by fastapi, a core dependency
        "import json\nfrom darktower.cli import main\n",
    ],
)
def test_core_optional_and_type_only_imports_pass(tmp_path: Path, code: str) -> None:
    imports = list(third_party_imports(_tree(tmp_path, code)))
    assert violations(imports, project(), THROUGH) == []


def test_a_through_package_its_parent_does_not_require_is_named(tmp_path: Path) -> None:
    code = "import yaml\n"
    found = violations(
        list(third_party_imports(_tree(tmp_path, code))), project(), {"pyyaml": "httpx"}
    )
    assert len(found) == 1 and "`import yaml`" in found[0], found


def test_the_core_install_smoke_fails_on_a_missing_runtime_dependency() -> None:
    """`.ci/run`'s smoke (scripts/smoke_core_install.py) fails, naming the module, when a
    runtime import is missing: here httpx is made unimportable before the smoke runs."""
    prelude = (
        "import runpy, sys; sys.modules['httpx'] = None; "
        f"runpy.run_path({str(ROOT / 'scripts' / 'smoke_core_install.py')!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "core-only smoke: FAILED:" in done.stderr
    assert "needs 'httpx', which no core dependency provides" in done.stderr, done.stderr
    assert "imported" not in done.stdout  # it stopped before starting any fleet
