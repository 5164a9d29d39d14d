"""What the demo prints, and the error that ends it."""

from __future__ import annotations

import os
from pathlib import Path


class DemoError(Exception):
    """A step that cannot go on; ``status`` 2 = the user must fix something, 1 = a failure."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when inside it (shorter commands to copy)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def say(message: str = "") -> None:
    print(message, flush=True)


def step(title: str) -> None:
    say(f"\n=== {title}")
