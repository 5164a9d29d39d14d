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
# change the last bits (about 5e-8), and so does the CPU's vector width: on an AVX2-only
# machine the step-20 validation loss came out 1.9e-6 off the AVX-512 recording. A gradient
# scale off by 2 moves them by about 1e-2, so LOSS_TOLERANCE leaves three orders between.
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
LOSS_TOLERANCE = 1e-5  # float32 losses near 10 are 1e-6 apart: a few ulps


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
    assert [float(r[3]) for r in rows] == pytest.approx(LOSSES, abs=LOSS_TOLERANCE, rel=0)
    assert [(int(r[5]), int(r[6])) for r in rows] == TOKENS
    assert _eval_losses(run) == pytest.approx(EVAL_LOSSES, abs=LOSS_TOLERANCE, rel=0)


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
    assert {k: evals[k] for k in (10, 20)} == pytest.approx(EVAL_LOSSES, abs=LOSS_TOLERANCE, rel=0)
    assert evals[5] > evals[10] > evals[15] > evals[20]  # it validates the current weights
    assert sorted(p.name for p in run.glob("*.pkl")) == [
        "GP2-pretrain-step-10.pkl",
        "GP2-pretrain-step-20.pkl",
    ]
    assert hf_saves == [10, 20]
    # Validating more often leaves training as it was.
    assert [float(r[3]) for r in _train_rows(run)] == pytest.approx(
        LOSSES, abs=LOSS_TOLERANCE, rel=0
    )


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


def _reference_running_losses(train_data, steps: int, batch_size: int) -> list[float]:
    """The published computation, written plainly, on the batches the trainer draws: Hugging
    Face's GPT-2 with logits at every position, cross-entropy over the labelled ones, torch's
    non-fused AdamW, clipping at 1.0; returns the per-epoch running mean loss per step."""
    import torch
    import torch.nn.functional as F
    import transformers

    from lsp_data.loaders import BucketingDataLoader
    from lsp_model.loading import load_model
    from lsp_model.optim import param_groups

    trainer.seed_everything(42)  # what train() does before building the model
    start = load_model(str(train_data["model"]), None)
    config = transformers.GPT2Config.from_json_file(str(train_data["model"] / "config.json"))
    config._attn_implementation = "eager"
    model = transformers.GPT2LMHeadModel(config)
    model.load_state_dict(start.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(
        param_groups(model), lr=3e-3, betas=(0.9, 0.999), eps=1e-6, foreach=False
    )
    loader = BucketingDataLoader(str(train_data["db"]), batch_size, 64, seed=42, prefetch=0)
    batches = ((epoch, b) for epoch in range(100) for b in loader.iter_epoch(epoch))
    running: list[float] = []
    total, n, current_epoch = 0.0, 0, 0
    for _ in range(steps):
        epoch, (input_ids, position_ids, _, labels) = next(batches)
        if epoch != current_epoch:  # train_log.txt's means are per epoch
            total, n, current_epoch = 0.0, 0, epoch
        logits = model(input_ids, position_ids=position_ids, use_cache=False).logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-1
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total, n = total + loss.item(), n + 1
        running.append(total / n)
    return running


def test_trainer_computes_what_the_published_trainer_computes(train_data, tmp_path):
    # 50 steps in float32 on the same batches: the toolkit's faster step (projection only at
    # labelled positions, fused AdamW, SDPA attention) gives the published loss curve.
    steps = 50
    run = LSP_train.main(
        train_argv(
            train_data,
            tmp_path,
            "--num_optim_steps",
            str(steps),
            "--valid_step",
            str(steps),
            "--gradient_accumulation_steps",
            "1",
            "--skip_eval",
        )
    )
    logged = [float(r[3]) for r in _train_rows(run)]
    assert len(logged) == steps
    assert logged == pytest.approx(_reference_running_losses(train_data, steps, 8), abs=1e-5, rel=0)


def test_token_budget_run_keeps_its_budget_and_reports_padding(train_data, tmp_path, capsys):
    run = LSP_train.main(
        train_argv(
            train_data,
            tmp_path,
            "--num_optim_steps",
            "6",
            "--valid_step",
            "6",
            "--max_tokens_per_batch",
            "256",
            "--pad_to_multiple",
            "16",
        )
    )
    rows = _train_rows(run)
    assert len(rows) == 6
    real, total = int(rows[-1][5]), int(rows[-1][6])
    assert total % 16 == 0 and real <= total
    # each pass holds at most 256 padded tokens: two passes per step
    assert total <= 6 * 2 * 256
    # The share counts the stored features' lengths as real: whole batches taken, no more.
    assert f"% of the {total} tokens in the training batches" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(train_data, tmp_path):
    common = ("--num_optim_steps", "3", "--valid_step", "3", "--skip_eval")
    eager = _train_rows(LSP_train.main(train_argv(train_data, tmp_path / "e", *common)))
    compiled = _train_rows(
        LSP_train.main(train_argv(train_data, tmp_path / "c", *common, "--compile", "true"))
    )
    assert [float(r[3]) for r in compiled] == pytest.approx(
        [float(r[3]) for r in eager], abs=1e-4, rel=0
    )
