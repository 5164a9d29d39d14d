"""The training loop: a fixed run's losses, --eval_step, failures injected into train_step."""

from __future__ import annotations

import pytest

import LSP_train
from gpt2_training import trainer
from tests.gpt2_training.conftest import read_csv, train_argv

pytestmark = pytest.mark.slow

RUN = (
    "--num_optim_steps",
    "20",
    "--valid_step",
    "10",
    "--lr_schedule",
    "BERT",
    "--warmup_proportion",
    "0.25",
)

# Recorded with the trainer as it was before its restructuring (commit 490c096), float32 on
# CPU: train_log.txt's mean_loss and token counts per step, eval_log.txt's loss. Threads
# change the last bits (about 5e-8); a gradient scale off by 2 moves them by about 1e-2.
LOSSES = [
    10.810066223144531,
    10.814988136291504,
    10.810803731282553,
    10.791633486747742,
    10.768201732635498,
    10.731820662816366,
    10.690725122179304,
    10.642436027526855,
    10.58675373925103,
    10.533721256256104,
    10.479628823020242,
    10.424020250638327,
    10.367863214932955,
    10.315287487847465,
    10.26347230275472,
    10.21537932753563,
    10.16736863641178,
    10.123923063278198,
    10.083716141550164,
    10.04518437385559,
]
TOKENS = [
    (192, 192),
    (320, 320),
    (416, 416),
    (576, 576),
    (736, 736),
    (904, 928),
    (1064, 1088),
    (1240, 1280),
    (1400, 1440),
    (1560, 1600),
    (1688, 1728),
    (1776, 1824),
    (1872, 1920),
    (1968, 2016),
    (2096, 2144),
    (2288, 2336),
    (2416, 2464),
    (2576, 2624),
    (2752, 2816),
    (2944, 3008),
]
EVAL_LOSSES = {10: 10.008583068847656, 20: 9.470344543457031}


def _train_rows(run):
    _, rows = read_csv(run / "train_log.txt")
    return rows


def _eval_losses(run) -> dict[int, float]:
    _, rows = read_csv(run / "eval_log.txt")
    return {int(r[1]): float(r[3]) for r in rows}


def test_fixed_run_gives_the_recorded_losses(train_data, tmp_path):
    run = LSP_train.main(train_argv(train_data, tmp_path, *RUN))
    rows = _train_rows(run)
    assert [int(r[1]) for r in rows] == list(range(1, 21))
    assert [float(r[3]) for r in rows] == pytest.approx(LOSSES, abs=1e-6, rel=0)
    assert [(int(r[5]), int(r[6])) for r in rows] == TOKENS
    assert _eval_losses(run) == pytest.approx(EVAL_LOSSES, abs=1e-6, rel=0)


def test_eval_step_validates_without_saving(train_data, tmp_path, monkeypatch):
    hf_saves = []
    save_hf_folder = trainer.save_hf_folder

    def counting(model, tokenizer, folder):
        hf_saves.append(len(_train_rows(folder.parent)))  # the step it was saved after
        return save_hf_folder(model, tokenizer, folder)

    monkeypatch.setattr(trainer, "save_hf_folder", counting)
    run = LSP_train.main(train_argv(train_data, tmp_path, *RUN, "--eval_step", "5"))
    evals = _eval_losses(run)
    assert sorted(evals) == [5, 10, 15, 20]
    assert {k: evals[k] for k in (10, 20)} == pytest.approx(EVAL_LOSSES, abs=1e-6, rel=0)
    assert evals[5] > evals[10] > evals[15] > evals[20]  # it validates the current weights
    assert sorted(p.name for p in run.glob("*.pkl")) == [
        "GP2-pretrain-step-10.pkl",
        "GP2-pretrain-step-20.pkl",
    ]
    assert hf_saves == [10, 20]
    # Validating more often leaves training as it was.
    assert [float(r[3]) for r in _train_rows(run)] == pytest.approx(LOSSES, abs=1e-6, rel=0)


def test_failed_step_then_resume_gives_the_uninterrupted_losses(
    train_data, tmp_path, monkeypatch, capsys
):
    common = ("--num_optim_steps", "4", "--valid_step", "4", "--save_step", "2", "--skip_eval")
    full = LSP_train.main(train_argv(train_data, tmp_path / "full", *common))
    train_step = trainer.train_step

    def failing(run, progress, stream):
        if progress.global_step + 1 == 3:
            raise RuntimeError("injected failure at step 3")
        return train_step(run, progress, stream)

    monkeypatch.setattr(trainer, "train_step", failing)
    assert LSP_train.main(train_argv(train_data, tmp_path / "broken", *common)) == 1
    err = capsys.readouterr().err
    assert "LSP_train.py: failed:" in err and "injected failure at step 3" in err
    monkeypatch.undo()
    (run,) = (tmp_path / "broken").iterdir()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]
    assert [r[1] for r in _train_rows(run)] == ["1", "2"]

    argv = train_argv(train_data, tmp_path / "broken", *common, "--resume", "latest")
    assert LSP_train.main(argv) == run
    assert [r[3] for r in _train_rows(run)] == [r[3] for r in _train_rows(full)]
