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
    "prepro.py": "lsp_data.prepro_cli:main",
    "LSP_train.py": "gpt2_training.cli:run",
    "decode.py": "lsp_decode.cli:main",
    "chat.py": "lsp_decode.chat:main",
    "demo.py": "lsp_demo.cli:main",
    "reddit_extractor/src/reddit.py": "reddit_extractor.cli:main",
    "reddit_extractor/src/download.py": "reddit_extractor.cli:download_main",
    "reddit_extractor/src/create-multiref.py": "reddit_extractor.cli:multiref_main",
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
    imported = {
        f"{node.module}:{alias.name}"
        for node in body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert SHIMS[shim] in imported
    assert SHIMS[shim] in SCRIPTS.values()


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_published_script_runs(shim: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / shim), "--help"],
        cwd=REPO.parent,  # the scripts run from anywhere
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--help" in result.stdout
