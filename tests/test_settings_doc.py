"""The services' help is read from their settings classes: every variable, its default, and
secrets marked without their value."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from darktower.runtime.settings_doc import Contradiction, env_help, env_lines, shared_ports


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EX_")

    bind: str = Field(default="0.0.0.0:1", description="where it listens")
    url: SecretStr = Field(default=SecretStr("redis://:pw-default@host/0"), description="db")
    token: SecretStr | None = None
    ratio: float = 2.5
    enabled: bool = False
    files: list[Path] = Field(default_factory=list)
    key: Path | None = None
    name: str = Field(default_factory=lambda: "made-here")
    note: str = "[bold]not markup[/bold]"


def test_every_field_with_its_default_and_secrets_hidden() -> None:
    assert env_lines(Example) == [
        ("EX_BIND", "0.0.0.0:1", "where it listens"),
        ("EX_URL", "(secret)", "db"),
        ("EX_TOKEN", "(secret)", ""),
        ("EX_RATIO", "2.5", ""),
        ("EX_ENABLED", "false", ""),
        ("EX_FILES", "(empty)", ""),
        ("EX_KEY", "(unset)", ""),
        ("EX_NAME", "made-here", ""),
        ("EX_NOTE", "[bold]not markup[/bold]", ""),
    ]


def test_the_help_text_is_aligned_and_escaped_for_rich() -> None:
    text = env_help(Example)
    assert "pw-default" not in text
    lines = text.splitlines()
    # Descriptions start in one column, after the longest `NAME=default` (the note's).
    width = len("EX_NOTE=[bold]not markup[/bold]")
    assert lines[0] == "EX_BIND=0.0.0.0:1".ljust(width) + "  where it listens"
    assert r"EX_NOTE=\[bold]not markup\[/bold]" in lines[-1]


def test_shared_ports() -> None:
    assert shared_ports({"A": "127.0.0.1:5", "B": "127.0.0.1:6", "C": "[::]:5"}) == [
        Contradiction("A=127.0.0.1:5", "C=[::]:5", "both listen on one port")
    ]
