"""demo.py (lsp_demo.cli) end to end (offline, CPU only) and its command line."""

from __future__ import annotations

import csv
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from lsp_demo import REPO
from lsp_demo import cli as demo
from lsp_demo.data import read_months
from lsp_demo.model_choice import TINY_CONFIG
from lsp_demo.training import PRETRAINED_SETTINGS, finished_run, flag_value


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_pretrained_model_unavailable_offline_exits_2(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = demo.main(
        [
            "--model",
            "small",
            "--model_dir",
            str(tmp_path / "none"),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "microsoft/DialoGPT-small" in err and "HF_HUB_OFFLINE" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num_optim_steps", "0"], "--num_optim_steps must be at least 1"),
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--output_dir", "{file}"], "exists and is not a folder"),
    ],
)
def test_bad_options_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "a_file").write_text("")
    extra = [e.format(file=tmp_path / "a_file") for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--output_dir", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _printed_command(out: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if "LSP_train.py --model_name_or_path" in ln)
    return shlex.split(line)


@pytest.mark.slow
def test_demo_end_to_end_and_rerun(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "demo"
    argv = [
        "--model",
        "auto",
        "--model_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(out_dir),
        "--num_optim_steps",
        "16",
        "--valid_step",
        "4",
    ]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "model: tiny" in out and "chatterbot-corpus" in out

    # Data and database.
    data = out_dir / "data" / "dummy"
    assert (data / "train.tsv").is_file() and (data / "valid.tsv").is_file()
    db = data / "train.128len.db"
    assert (db / "meta.json").is_file() and (db / "db.sqlite").is_file()

    # The printed command is the one that ran, and parses as LSP_train.py arguments.
    cmd = _printed_command(out)
    assert Path(cmd[1]).name == "LSP_train.py"
    assert cmd[cmd.index("--train_input_file") + 1].endswith("train.128len.db")
    assert cmd[cmd.index("--fp16") + 1] == ("true" if torch.cuda.is_available() else "false")

    # Run folder: logs, state dict, HF folder, resumable checkpoints.
    runs = [p for p in (out_dir / "models").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    with open(run / "train_log.txt", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "epoch",
        "global_step",
        "step",
        "mean_loss",
        "mean_ppl",
        "n_token_real",
        "n_token_total",
        "epoch_time",
    ]
    assert [int(r[1]) for r in rows[1:]] == list(range(1, 17))
    with open(run / "eval_log.txt", newline="") as f:
        evals = list(csv.DictReader(f))
    assert [int(r["global_step"]) for r in evals] == [4, 8, 12, 16]
    assert float(evals[-1]["eval_ppl"]) < float(evals[0]["eval_ppl"])
    from lsp_model.loading import load_model, load_state_dict_file

    sd = load_state_dict_file(run / "GP2-pretrain-step-16.pkl")
    assert "transformer.wte.weight" in sd
    assert load_model(run / "hf_model").config.n_layer == 2
    assert any((run / "checkpoints").iterdir())

    # output.log: the training output, one line per log line.
    log = (out_dir / "output.log").read_text(encoding="utf-8")
    assert log.startswith(f"$ {shlex.join(cmd)}\n")
    assert "step 16: validation loss" in log and "done: 16 optimizer steps" in log
    assert "validation perplexity" in out

    # The sample conversation: three user turns, three non-empty replies.
    sample = (out_dir / "sample_conversation.txt").read_text(encoding="utf-8")
    users = [ln for ln in sample.splitlines() if ln.startswith("USER: ")]
    bots = [ln for ln in sample.splitlines() if ln.startswith("BOT:  ")]
    assert len(users) == len(bots) == 3
    assert all(len(b) > len("BOT:  ") for b in bots)  # an empty reply is said to be empty
    assert sample in out

    # A rerun reuses every finished step and trains nothing.
    log_before = (out_dir / "output.log").stat().st_mtime_ns
    assert demo.main(argv) == 0
    out2 = capsys.readouterr().out
    assert out2.count("reusing") == 3
    assert "reusing the finished run" in out2 and "--force" in out2
    assert [p for p in (out_dir / "models").iterdir() if p.is_dir()] == runs
    assert (out_dir / "output.log").stat().st_mtime_ns == log_before

    # A different command trains again (no reuse of a run made with other settings).
    marker = out_dir / "training.json"
    assert finished_run(marker, cmd) == run.resolve()
    assert finished_run(marker, cmd[:-2] + ["--pbar", "true"]) == run.resolve()
    other = list(cmd)
    other[other.index("--seed") + 1] = "7"
    assert finished_run(marker, other) is None


@pytest.mark.slow
def test_demo_reddit_small_on_synthetic_dumps(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data small drives make over every month of the list, then holds out validation."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    from tests.reddit_extractor.synth import random_month, write_month

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    months = read_months(REPO / "configs" / "reddit" / "train.small.txt")
    for i, month in enumerate(months):
        write_month(str(dumps), month, *random_month(8, 60, seed=i), ext=".gz")
    out_dir = tmp_path / "out"
    repo_work = REPO / "reddit_extractor" / "data"
    existed = repo_work.exists()
    argv = [
        "--data",
        "small",
        "--model",
        "tiny",
        "--reddit_dumps",
        str(dumps),
        "--output_dir",
        str(out_dir),
        "--num_optim_steps",
        "2",
        "--valid_step",
        "1",
        "--jobs",
        "2",
    ]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "make -C" in out and "SIZE=small" in out
    data = out_dir / "data" / "small"
    train, valid = _read(data / "train.tsv"), _read(data / "valid.tsv")
    assert train and valid and len(valid) <= len(train) // 9 + 1
    for line in train:
        context, response = line.split("\t")
        assert response.startswith(("1.0 ", "0.0 "))
    for line in valid:
        assert len(line.split("\t")) == 2 and not line.startswith(("1.0 ", "0.0 "))
    assert not (data / "extracted" / "train.tsv").exists()  # the full copy is not kept
    assert (out_dir / "data" / "reddit_work" / "train" / "conv").is_dir()
    assert repo_work.exists() == existed  # the extractor's own work folder is left alone

    assert demo.main(argv) == 0
    assert "reusing" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_fine_tunes_a_local_pretrained_copy(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model auto takes MODEL_DIR/DialoGPT-small (here: tiny weights in HF layout)."""
    from lsp_data.tokenizer import load_tokenizer
    from lsp_model.loading import load_model, save_hf_folder

    folder = tmp_path / "models" / "DialoGPT-small"
    save_hf_folder(load_model(TINY_CONFIG), load_tokenizer(None), folder)
    out_dir = tmp_path / "out"
    argv = [
        "--model_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(out_dir),
        "--num_optim_steps",
        "6",
        "--learning_rate",
        "1e-3",
        "--",
        "--eval_batch_size",
        "16",
    ]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "model: small" in out and "local copy" in out
    cmd = _printed_command(out)
    assert Path(cmd[cmd.index("--model_name_or_path") + 1]).resolve() == folder.resolve()
    assert flag_value(cmd, "--train_batch_size") == str(PRETRAINED_SETTINGS["train_batch_size"])
    assert flag_value(cmd, "--valid_step") == "2"  # a third of the steps
    assert flag_value(cmd, "--eval_batch_size") == "16"  # the flag after -- wins
    run = next(p for p in (out_dir / "models").iterdir() if p.is_dir())
    assert (run / "GP2-pretrain-step-6.pkl").is_file()
