"""No service imports another's internals: what two of them need lives in `darktower.common`.

Read from the source (every `import`, also those inside functions, relative ones resolved), so
a lazy import is caught too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import darktower

PACKAGE = Path(darktower.__file__).parent


def imported_modules(source: str, module: str) -> set[str]:
    """Every module the source of `module` (a dotted name) imports, as absolute names; for
    `from a import b` both `a` and `a.b` (b may be a submodule)."""
    package = module.split(".")
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = ".".join(package[: len(package) - node.level])
                base = f"{prefix}.{base}" if base else prefix
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def offences(where: str, forbidden: tuple[str, ...]) -> list[str]:
    """`<file> imports <module>` for each import of a `forbidden` package below `where`."""
    root = PACKAGE / where
    found = []
    for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), module)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


@pytest.mark.parametrize(
    ("where", "forbidden"),
    [
        ("gc", ("darktower.mc",)),
        ("mc", ("darktower.gc",)),
        ("mhsim", ("darktower.mc", "darktower.gc")),
        ("client", ("darktower.mc", "darktower.gc")),
        ("common", ("darktower.mc", "darktower.gc", "darktower.dev", "darktower.client")),
        ("cli_support.py", ("darktower.mc", "darktower.gc", "darktower.client")),
    ],
)
def test_no_service_imports_another(where: str, forbidden: tuple[str, ...]) -> None:
    assert offences(where, forbidden) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import darktower.mc.errors", "darktower.mc.errors"),
        ("from darktower.mc import validation", "darktower.mc.validation"),
        ("def f():\n    from darktower.mc.errors import InvalidMcRequest", "darktower.mc.errors"),
        ("from ...mc import validation", "darktower.mc.validation"),
        ("from .. import store", "darktower.gc.store"),
        ("from ...mc.errors import InvalidMcRequest", "darktower.mc.errors"),
    ],
)
def test_every_kind_of_import_is_seen(source: str, expected: str) -> None:
    # As if written in darktower/gc/placement/probe.py: the check must be able to fail.
    assert expected in imported_modules(source, "darktower.gc.placement.probe")


@pytest.mark.parametrize(("where", "other"), [("gc", "darktower.mc"), ("mc", "darktower.gc")])
def test_no_service_even_names_the_other(where: str, other: str) -> None:
    # Not in a docstring or comment either: a reader of one service's code is not sent into
    # the other's; what both need is in darktower.common, what one asks of the other is wire.
    pattern = re.compile(re.escape(other) + r"\b")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted((PACKAGE / where).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
