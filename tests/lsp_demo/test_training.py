"""lsp_demo.training: the LSP_train.py command, live output and its log."""

from __future__ import annotations

import json
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


def _eval_log(run: Path, ppls: list[float]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"1,{4 * (i + 1)},{8 * (i + 1)},{p},{p}\n" for i, p in enumerate(ppls))
    (run / "eval_log.txt").write_text("epoch,global_step,step,eval_loss,eval_ppl\n" + rows)
    return run


def test_check_learning_needs_the_perplexity_to_fall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _eval_log(tmp_path / "fell", [900.0, 700.0, 650.5])
    assert training.check_learning(run) == ((4, 900.0), (12, 650.5))
    assert "900.0 at step 4 -> 650.5 at step 12 (3 validations" in capsys.readouterr().out
    for name, ppls in [("rose", [700.0, 800.0]), ("flat", [700.0, 700.0]), ("nan", [700.0, "nan"])]:
        with pytest.raises(training.DemoError, match="validation perplexity did not fall"):
            training.check_learning(_eval_log(tmp_path / name, ppls))
    one = _eval_log(tmp_path / "one", [800.0])
    assert training.check_learning(one) == ((4, 800.0), (4, 800.0))
    assert "only one validation" in capsys.readouterr().out
    with pytest.raises(training.DemoError, match="has no validation row"):
        training.check_learning(_eval_log(tmp_path / "empty", []))
    with pytest.raises(training.DemoError, match="cannot read"):
        training.check_learning(tmp_path / "missing")


def test_finished_run_needs_every_output_of_the_same_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "hf_model").mkdir(parents=True)
    (run / "hf_model" / "config.json").write_text("{}")
    (run / "GP2-pretrain-step-40.pkl").write_bytes(b"")
    (run / "eval_log.txt").write_text("")
    cmd = ["python", "LSP_train.py", "--num_optim_steps", "40", "--pbar", "false"]
    marker = tmp_path / "training.json"
    marker.write_text(json.dumps({"command": cmd[1:-2], "run_dir": str(run)}))
    assert training.finished_run(marker, cmd) == run
    assert training.finished_run(marker, ["/other/python", *cmd[1:-1], "true"]) == run
    assert training.finished_run(marker, [*cmd, "--seed", "7"]) is None
    (run / "eval_log.txt").unlink()
    assert training.finished_run(marker, cmd) is None  # validation never finished
    marker.write_text(json.dumps({"command": [*cmd[1:-2], "--skip_eval"], "run_dir": str(run)}))
    assert training.finished_run(marker, [*cmd, "--skip_eval"]) == run
    (run / "hf_model" / "config.json").unlink()
    assert training.finished_run(marker, [*cmd, "--skip_eval"]) is None
    (run / "hf_model" / "config.json").write_text("{}")
    (run / "GP2-pretrain-step-40.pkl").unlink()
    assert training.finished_run(marker, [*cmd, "--skip_eval"]) is None
    marker.write_text("not json")
    assert training.finished_run(marker, cmd) is None


FAKE_TRAIN = """
import os, sys, time
from pathlib import Path
runs = Path(sys.argv[sys.argv.index("--output_dir") + 1])
run = runs / f"GPT2.{time.time_ns()}"
(run / "hf_model").mkdir(parents=True)
print("training", os.environ["FAKE_MODE"], flush=True)
if os.environ["FAKE_MODE"] == "fail":
    sys.exit("boom")
(run / "hf_model" / "config.json").write_text("{}")
(run / "GP2-pretrain-step-40.pkl").write_bytes(b"w")
(run / "eval_log.txt").write_text("")
"""


def test_a_failed_or_interrupted_run_keeps_the_last_finished_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    out, runs = tmp_path / "demo_output", tmp_path / "demo_output" / "models"
    out.mkdir()
    cmd = ["python", str(script), "--output_dir", str(runs), "--num_optim_steps", "40"]
    monkeypatch.setenv("FAKE_MODE", "good")
    finished = training.train(cmd, out, runs, force=False)
    assert "training good" in (out / "output.log").read_text()

    monkeypatch.setenv("FAKE_MODE", "fail")
    with pytest.raises(training.DemoError, match="output.failed.log; its partial run folder"):
        training.train(cmd, out, runs, force=True)
    assert [p for p in runs.iterdir()] == [finished]  # the partial folder is gone
    assert "training fail" in (out / "output.failed.log").read_text()
    assert "training good" in (out / "output.log").read_text()
    assert training.finished_run(out / "training.json", cmd) == finished

    def interrupted(command, log_path, header=""):
        (runs / "GPT2.partial").mkdir()
        log_path.write_text(header + "half a run\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "stream_to_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(cmd, out, runs, force=True)
    assert [p for p in runs.iterdir()] == [finished]
    assert "half a run" in (out / "output.failed.log").read_text()
    assert "training good" in (out / "output.log").read_text()
    capsys.readouterr()
    assert training.train(cmd, out, runs, force=False) == finished  # reused, not retrained
    assert "reusing the finished run" in capsys.readouterr().out
