"""The training code stays readable: no function in gpt2_training/ grows past 80 lines."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 80


def test_every_training_function_is_short() -> None:
    long = []
    for path in sorted((REPO / "gpt2_training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not long, "split these:\n" + "\n".join(long)
