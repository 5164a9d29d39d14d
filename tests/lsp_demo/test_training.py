"""lsp_demo.training: the LSP_train.py command, live output and its log."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

import demo
from lsp_demo import training
from lsp_demo.model_choice import ModelChoice


def test_stream_to_log_keeps_final_progress_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "output.log"
    code = (
        "import sys; sys.stdout.write('start\\n10%\\r50%\\r100%\\ndone ü\\n'); "
        "sys.stderr.write('warn\\n'); sys.exit(3)"
    )
    assert training.stream_to_log([sys.executable, "-c", code], log) == 3
    assert "10%\r50%\r100%" in capsys.readouterr().out
    assert log.read_text(encoding="utf-8").splitlines() == ["start", "100%", "done ü", "warn"]


def _parsed_command(tmp_path: Path, *demo_argv: str, extra: tuple[str, ...] = ()):
    from gpt2_training.args import build_parser

    args = demo.build_parser().parse_args(list(demo_argv))
    model = ModelChoice("tiny", "configs/tiny", "", pretrained=False)
    cmd = training.train_command(
        args,
        model,
        tmp_path / "train.128len.db",
        tmp_path / "valid.tsv",
        tmp_path / "models",
        list(extra),
    )
    assert Path(cmd[1]).name == "LSP_train.py"
    return build_parser().parse_args(shlex.split(shlex.join(cmd))[2:])


@pytest.mark.parametrize("cuda", [False, True])
def test_train_command_asks_fp16_only_with_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda: bool
) -> None:
    # fp16 is said explicitly either way: true on a GPU, false on a CPU (no fallback warning).
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert _parsed_command(tmp_path).fp16 is cuda


def test_train_command_parses_and_passes_extra_flags(tmp_path: Path) -> None:
    parsed = _parsed_command(tmp_path, "--num_optim_steps", "40", extra=("--tensorboard", "true"))
    assert parsed.num_optim_steps == 40 and parsed.valid_step == 4
    assert parsed.learning_rate == training.TINY_SETTINGS["learning_rate"]
    assert parsed.gradient_accumulation_steps == 1 and parsed.tensorboard is True


# ----------------------------------------------------------------------------- end to end
