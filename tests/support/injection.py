"""Injected failures: a callable that fails once, then behaves, for tests that prove a crash is
noticed (logged, counted, reported) and survived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["INJECTED", "fail_once"]

INJECTED = "injected failure"


def fail_once(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, except that its first call raises RuntimeError(INJECTED)."""
    calls = 0

    def step(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(INJECTED)
        return original(*args, **kwargs)

    return step
