"""The package's entry points: console scripts that resolve, and published scripts that are
thin shims over the same main()."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
SHIMS = {
    "prepro.py": "lsp_data.prepro_cli",
    "decode.py": "lsp_decode.cli",
    "chat.py": "lsp_decode.chat",
    "demo.py": "lsp_demo.cli",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_points_at_a_main(name: str) -> None:
    module, _, function = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_published_script_is_a_shim_over_the_console_script(shim: str) -> None:
    tree = ast.parse((REPO / shim).read_text(encoding="utf-8"))
    body = [node for node in tree.body if not isinstance(node, ast.Expr)]  # docstring
    assert len(body) <= 3, f"{shim} holds code: keep it a shim"
    imported = {node.module for node in body if isinstance(node, ast.ImportFrom) and node.module}
    assert SHIMS[shim] in imported
    assert f"{SHIMS[shim]}:main" in SCRIPTS.values()


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_published_script_runs(shim: str) -> None:
    result = subprocess.run(
        [sys.executable, shim, "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--help" in result.stdout
