"""The repository is self-contained: what the README, docs/, the code and its comments point a
reader to is in the repository. Every `*.md` document they name exists here (next to the file
that names it, or from the repository's root), every relative link of a Markdown document
resolves, and no text names a design document kept outside (the wire protocol, the numbers
and the behaviours are in docs/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where readers are pointed from: the documents, the code, the scripts, the deployment files.
TREES = ("src", "docs", "scripts", "deploy", "bench", "proto", "tests", ".ci")
FILES = ("README.md", "Dockerfile", "pyproject.toml")
SUFFIXES = {".py", ".pyi", ".md", ".proto", ".sh", ".yaml", ".yml", ".toml", ".lua", ".js", ""}
SKIP = {"src/darktower/wire/dark_tower"}  # generated stubs

# A document named by file name: `docs/reference.md`, `README.md`, `runbooks/McDown.md`.
DOCUMENT = re.compile(r"(?<![\w/.@:-])((?:[\w.-]+/)*[\w-]+\.md)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Documents the project was once specified in, outside the repository.
OUTSIDE = re.compile(r"\b(SPEC|STYLE)\.md\b|/work/shared|/tmp/briefs")


def sources() -> Iterator[Path]:
    for name in FILES:
        yield ROOT / name
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            relative = path.relative_to(ROOT).as_posix()
            if any(relative.startswith(skip) for skip in SKIP) or "__pycache__" in relative:
                continue
            if path.is_file() and path.suffix in SUFFIXES:
                yield path


@cache
def _document_names() -> frozenset[str]:
    return frozenset(p.name for t in ("docs", "deploy") for p in (ROOT / t).rglob("*.md"))


def dangling(path: Path, text: str) -> list[str]:
    """What `text` (the content of `path`) points to that the repository does not hold."""
    found = []
    for match in DOCUMENT.finditer(text):
        name = match.group(1)
        if "/" not in name and name in _document_names():
            continue  # a bare name ("applications.md", from DOCS / "applications.md")
        if not ((path.parent / name).exists() or (ROOT / name).exists()):
            found.append(f"names {name}")
    if path.suffix == ".md":
        for match in LINK.finditer(text):
            target = match.group(1).split("#", 1)[0]
            if not target or re.match(r"[a-z]+:", target):  # an anchor, http(s), mailto
                continue
            if not (path.parent / target).exists():
                found.append(f"links {target}")
    found += [f"names {m.group(0)}" for m in OUTSIDE.finditer(text)]
    return found


def test_every_document_the_repository_points_to_is_in_it() -> None:
    paths = list(sources())
    assert len(paths) > 200 and ROOT / "docs" / "reference.md" in paths
    problems = []
    for path in paths:
        if path == Path(__file__):
            continue
        problems += [
            f"{path.relative_to(ROOT)}: {what}" for what in dangling(path, path.read_text())
        ]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("see SPEC.md for the wire format", "names SPEC.md"),
        ("# The numbers are in docs/numbers.md", "names docs/numbers.md"),
        ('DOCS / "numbers.md"', "names numbers.md"),
        ("[the protocol](docs/protocol.md)", "links docs/protocol.md"),
        ("as /work/shared/notes.txt says", "names /work/shared"),
    ],
)
def test_a_pointer_outside_the_repository_is_named(text: str, what: str) -> None:
    assert what in dangling(ROOT / "README.md", text)


@pytest.mark.parametrize(
    "text",
    [
        "[the wire protocol](docs/wire-protocol.md) and docs/reference.md",
        "README.md, [Tests](#tests), <https://example.org/x.md>",
        "see [Redis](https://redis.io/docs/) and mailto:[ops](mailto:ops@example.org)",
    ],
)
def test_pointers_inside_the_repository_pass(text: str) -> None:
    assert dangling(ROOT / "README.md", text) == []
