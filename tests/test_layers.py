"""The import graph: layers point one way (ARCHITECTURE.md), no cycles, a light data layer.

common (lsp_common) <- data (lsp_data) <- model (lsp_model) <- training (gpt2_training)
<- decoding and demo (lsp_decode, lsp_demo, the top-level scripts). dstc and reddit_extractor
stand apart: they may use lsp_common and nothing else of the toolkit, and nothing uses them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LAYER = {
    "lsp_common": 0,
    "lsp_data": 1,
    "lsp_model": 2,
    "gpt2_training": 3,
    "lsp_decode": 4,
    "lsp_demo": 4,
}
STANDALONE = {"dstc", "reddit_extractor"}
SCRIPTS = ["LSP_train.py", "chat.py", "data_loader.py", "decode.py", "demo.py", "prepro.py"]
TOOLKIT = set(LAYER) | STANDALONE


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def toolkit_files() -> list[Path]:
    files = [REPO / s for s in SCRIPTS]
    for package in sorted(TOOLKIT):
        files += sorted((REPO / package).rglob("*.py"))
    return files


def imports_of(path: Path, package: str) -> set[str]:
    """Toolkit modules that ``path`` (in ``package``) imports, at module level or inside
    functions; relative imports are resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in TOOLKIT}
    return found


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in toolkit_files()}
    return {
        name: {m for m in imports_of(path, package_of(path)) if m in modules and m != name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int | None:
    """None for a standalone package; the scripts sit on top."""
    top = module.split(".")[0]
    if top in STANDALONE:
        return None
    return LAYER.get(top, max(LAYER.values()))


def test_every_package_is_known() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages <= TOOLKIT, f"place {packages - TOOLKIT} in a layer"


def test_no_import_points_up_or_into_a_standalone_tool() -> None:
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            src, dst = module.split(".")[0], target.split(".")[0]
            if src == dst:
                continue
            if src in STANDALONE:
                ok = dst == "lsp_common"
            elif dst in STANDALONE:
                ok = False
            else:
                ok = layer_of(target) <= layer_of(module)
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [])):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import torch\nfrom lsp_model.modeling import X\n"
        "def f():\n    from ..gpt2_training import trainer\n    from .parsing import Y\n"
    )
    assert imports_of(source, "lsp_data") == {
        "lsp_model.modeling",
        "lsp_model.modeling.X",
        "gpt2_training",
        "gpt2_training.trainer",
        "lsp_data.parsing",
        "lsp_data.parsing.Y",
    }


DATA_LAYER = sorted(module_name(p) for p in (REPO / "lsp_data").glob("*.py")) + [
    module_name(p) for p in (REPO / "lsp_common").glob("*.py")
]


def test_data_layer_imports_without_torch_or_transformers() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {DATA_LAYER!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
