"""README.md stays true: quick-start commands, CI entry, and the flags it shows."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[\w-]*\n(.*?)```", text, flags=re.S)


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1]
    block = code_blocks(section)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands():
    install_demo, install_test = quick_start_commands()
    assert install_demo.startswith("python -m pip install -r requirements.txt")
    assert install_demo.endswith("python demo.py")
    assert "requirements-dev.txt" in install_test and "pytest" in install_test


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert quick_start_commands()[1] in commands


def _shown_flags(script: str) -> set[str]:
    """Flags written after ``script`` in the README's shell blocks (continuations included)."""
    flags: set[str] = set()
    for block in code_blocks(README):
        logical = block.replace("\\\n", " ")
        for line in logical.splitlines():
            if script in line:
                tail = line.split(script, 1)[1].split(" -- ", 1)[0]  # after --: another script's
                flags.update(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", tail))
    return flags


def _parser_flags(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def test_lsp_train_flags_in_readme_exist():
    from gpt2_training.args import build_parser

    shown = _shown_flags("LSP_train.py")
    assert "--train_input_file" in shown
    assert shown <= _parser_flags(build_parser())


def test_prepro_flags_in_readme_exist():
    from lsp_data import prepro_cli

    shown = _shown_flags("prepro.py")
    assert {"--corpus", "--inspect"} <= shown
    assert shown <= _parser_flags(prepro_cli.build_parser())


def test_files_named_in_readme_exist():
    for name in (
        "demo.py",
        "prepro.py",
        "LSP_train.py",
        "data_loader.py",
        "requirements.txt",
        "requirements-dev.txt",
        "LSP-linux.yml",
        "LSP-generic.yml",
        "Dockerfile",
        "reddit_extractor/README.md",
        "dstc/README.md",
        "bench/loader_bench.py",
        "bench/prepro_bench.py",
        "bench/dstc_bench.py",
        "bench/reddit_bench.py",
        "configs/117M/config.json",
        "configs/345M/config.json",
        "configs/762M/config.json",
        "configs/tiny/config.json",
    ):
        assert (REPO / name).exists(), name


def test_decode_flags_in_readme_exist():
    from lsp_decode import cli

    shown = _shown_flags("decode.py")
    assert {"--mmi_model", "--method"} <= shown
    assert shown <= _parser_flags(cli.build_parser())


def test_demo_flags_in_readme_exist():
    from lsp_demo import cli

    shown = _shown_flags("demo.py")
    assert {"--model", "--data"} <= shown
    assert shown <= _parser_flags(cli.build_parser())


def test_reference_sections_cited_in_the_code_exist():
    """Comments cite the behaviour reference as ``docs/REFERENCE.md §N``; each N is a section."""
    reference = (REPO / "docs" / "REFERENCE.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", reference, flags=re.M))
    assert sections == {str(n) for n in range(11)}
    cited = set()
    for path in REPO.rglob("*"):
        if path.suffix in (".py", ".md") and ".git" not in path.parts and path.is_file():
            cited |= set(re.findall(r"REFERENCE\.md\)? §(\d+)", path.read_text(encoding="utf-8")))
    assert cited and cited <= sections, cited - sections


def test_chat_flags_in_readme_exist():
    from lsp_decode import chat

    shown = _shown_flags("chat.py")
    assert {"--model_name_or_path", "--web", "--port"} <= shown
    assert shown <= _parser_flags(chat.build_parser())
