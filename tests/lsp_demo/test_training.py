"""lsp_demo.training: the LSP_train.py command, live output and its log."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from lsp_demo import cli as demo
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


def test_train_command_parses_and_passes_extra_flags(tmp_path: Path) -> None:
    from gpt2_training.args import build_parser

    args = demo.build_parser().parse_args(["--num_optim_steps", "40"])
    model = ModelChoice("tiny", "configs/tiny", "", pretrained=False)
    cmd = training.train_command(
        args,
        model,
        tmp_path / "train.128len.db",
        tmp_path / "valid.tsv",
        tmp_path / "models",
        ["--tensorboard", "true"],
    )
    assert Path(cmd[1]).name == "LSP_train.py"
    parsed = build_parser().parse_args(shlex.split(shlex.join(cmd))[2:])
    assert parsed.num_optim_steps == 40 and parsed.valid_step == 4
    assert parsed.fp16 is False or parsed.fp16 is True
    assert parsed.learning_rate == training.TINY_SETTINGS["learning_rate"]
    assert parsed.gradient_accumulation_steps == 1 and parsed.tensorboard is True


# ----------------------------------------------------------------------------- end to end
