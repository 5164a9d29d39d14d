"""LSP_train.py in one process: logs, checkpoints, reloading, arguments, precision fallback."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import LSP_train
from gpt2_training.args import parse_args
from gpt2_training.logs import EVAL_HEADER, TRAIN_HEADER
from lsp_model.loading import load_model
from tests.gpt2_training.conftest import read_csv, train_argv


@pytest.fixture(scope="module")
def trained(train_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_dir = LSP_train.main(
        train_argv(train_data, out, "--num_optim_steps", "40", "--valid_step", "20")
    )
    return run_dir


@pytest.mark.slow
def test_training_run_logs_and_learns(trained):
    header, rows = read_csv(trained / "train_log.txt")
    assert tuple(header) == TRAIN_HEADER
    assert [int(r[1]) for r in rows] == list(range(1, 41))  # one row per optimizer step
    assert [int(r[2]) for r in rows] == list(range(2, 82, 2))  # micro-steps, 2 per step
    first_loss, last_loss = float(rows[0][3]), float(rows[-1][3])
    assert last_loss < first_loss - 0.5
    assert all(int(r[5]) <= int(r[6]) for r in rows)  # real tokens <= padded tokens
    eval_header, eval_rows = read_csv(trained / "eval_log.txt")
    assert tuple(eval_header) == EVAL_HEADER
    assert [int(r[1]) for r in eval_rows] == [20, 40]
    assert float(eval_rows[1][3]) < float(eval_rows[0][3])
    args = json.loads((trained / "args.json").read_text())
    assert args["micro_batch_size"] == 4 and args["num_optim_steps"] == 40
    assert trained.name.startswith("GPT2.0.003.4.0gpu.")


@pytest.mark.slow
def test_checkpoints_reload_to_identical_logits(trained, train_data):
    x = torch.randint(0, 50000, (2, 12))
    pkl = trained / "GP2-pretrain-step-40.pkl"
    assert (trained / "GP2-pretrain-step-20.pkl").is_file() and pkl.is_file()
    ours = load_model(str(train_data["model"]), str(pkl))
    hf = AutoModelForCausalLM.from_pretrained(trained / "hf_model").eval()
    with torch.no_grad():
        # transformers' own class computes the same tanh-GELU in seven operations
        torch.testing.assert_close(ours(x), hf(x).logits, rtol=0, atol=1e-5)
    tok = AutoTokenizer.from_pretrained(trained / "hf_model")
    ids = tok.encode("hello there" + tok.eos_token, return_tensors="pt")
    reply = hf.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert reply.shape[1] > ids.shape[1]


def test_config_file_and_flag_precedence(train_data, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps({"learning_rate": 0.5, "fp16": "false", "valid_step": 7, "train_batch_size": 6})
    )
    args = parse_args(train_argv(train_data, tmp_path, "--config", str(cfg), "--valid_step", "3"))
    assert args.valid_step == 3  # flag wins
    assert args.fp16 is False
    # train_argv passes --learning_rate and --train_batch_size, so they win over the file
    assert args.learning_rate == 3e-3 and args.train_batch_size == 8
    args = parse_args(
        [
            "--config",
            str(cfg),
            "--train_input_file",
            str(train_data["db"]),
            "--model_name_or_path",
            str(train_data["model"]),
            "--output_dir",
            str(tmp_path),
            "--skip_eval",
            "--gradient_accumulation_steps",
            "3",
        ]
    )
    assert args.learning_rate == 0.5 and args.train_batch_size == 6


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--train_batch_size", "5"], "not divisible by --gradient_accumulation_steps"),
        (["--init_checkpoint", "/nonexistent.pkl"], "no such file"),
        (["--learning_rate", "-1"], "--learning_rate must be >= 0"),
        (["--learning_rate", "nan"], "--learning_rate must be >= 0"),
        (
            ["--lr_schedule", "BERT", "--warmup_proportion", "0"],
            "--warmup_proportion must be in (0, 1]",
        ),
        (["--lr_schedule", "noam", "--warmup_steps", "0"], "--warmup_steps must be at least 1"),
        (["--loss_scale", "-2"], "--loss_scale must be >= 0"),
        (["--fp16", "maybe"], None),
    ],
)
def test_bad_arguments_are_clear(train_data, tmp_path, capsys, extra, message):
    argv = train_argv(train_data, tmp_path, *extra)
    if message is None:
        with pytest.raises(SystemExit) as err:
            LSP_train.main(argv)
        assert err.value.code == 2
        assert "expected true or false" in capsys.readouterr().err
    else:
        assert LSP_train.main(argv) == 2
        assert message in capsys.readouterr().err


def test_missing_database_and_eval_file(train_data, tmp_path, capsys):
    argv = train_argv(train_data, tmp_path)
    argv[argv.index("--train_input_file") + 1] = str(tmp_path / "missing.db")
    assert LSP_train.main(argv) == 2
    assert "missing.db: no such database folder" in capsys.readouterr().err
    argv = train_argv(train_data, tmp_path)
    argv[argv.index("--eval_input_file") + 1] = str(tmp_path / "missing.tsv")
    assert LSP_train.main(argv) == 2
    assert "missing.tsv: no such file" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    argv = train_argv(train_data, tmp_path)
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "a_file")
    assert LSP_train.main(argv) == 2
    assert "a_file: exists and is not a folder" in capsys.readouterr().err
    no_pairs = tmp_path / "no_pairs.tsv"
    no_pairs.write_text("no tab here\nnor here\n")
    argv = train_argv(train_data, tmp_path)
    argv[argv.index("--eval_input_file") + 1] = str(no_pairs)
    assert LSP_train.main(argv) == 1
    err = capsys.readouterr().err
    assert "no_pairs.tsv:2: skipped" in err  # each bad line named
    assert (
        "no CONTEXT<TAB>RESPONSE pair in it that fits --max_seq_length 64 "
        "(2 malformed lines skipped, 0 examples too long dropped)" in err
    )
    assert "Traceback" not in err
    assert LSP_train.main(train_argv(train_data, tmp_path, "--local_rank", "1")) == 1
    assert "error: --local_rank was given but RANK" in capsys.readouterr().err
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"no_such_option": 1}')
    assert LSP_train.main(train_argv(train_data, tmp_path, "--config", str(cfg))) == 2
    assert "unknown argument 'no_such_option'" in capsys.readouterr().err


def test_too_long_validation_examples_are_reported(train_data, tmp_path, capsys):
    # --max_seq_length 64: a context and a response of 70 tokens each cannot be cut to fit.
    words = " ".join(["word"] * 70)
    valid = tmp_path / "valid.tsv"
    valid.write_text(f"{words}\t{words}\n", encoding="utf-8")
    argv = train_argv(train_data, tmp_path, "--num_optim_steps", "1", "--valid_step", "1")
    argv[argv.index("--eval_input_file") + 1] = str(valid)
    assert LSP_train.main(argv) == 1  # at the start, not at the first validation
    err = capsys.readouterr().err
    assert f"{valid}: 1 of 1 examples dropped: too long to fit in max_seq_length=64" in err
    assert "(0 malformed lines skipped, 1 examples too long dropped)" in err

    valid.write_text(f"{words}\t{words}\nhello\tthere\nno tab\n", encoding="utf-8")
    run_dir = LSP_train.main(argv)
    err = capsys.readouterr().err
    assert err.count(f"{valid}: 1 of 2 examples dropped: too long") == 1  # once per run
    assert (
        f"validation ({valid}): 1 malformed lines skipped, 1 of 2 examples dropped as too "
        "long for --max_seq_length 64" in err
    )
    _, rows = read_csv(run_dir / "eval_log.txt")
    assert len(rows) == 1


def test_fp16_without_cuda_warns_and_trains(train_data, tmp_path, capsys):
    argv = train_argv(
        train_data, tmp_path, "--num_optim_steps", "2", "--valid_step", "2", "--skip_eval"
    )
    argv[argv.index("--fp16") + 1] = "true"
    run_dir = LSP_train.main(argv)
    assert capsys.readouterr().err.count("needs a CUDA GPU") == 1
    assert json.loads((run_dir / "args.json").read_text())["precision"] == "float32"


def test_bf16_on_cpu_weighted_loss_and_tensorboard(train_data, tmp_path):
    run_dir = LSP_train.main(
        train_argv(
            train_data,
            tmp_path,
            "--num_optim_steps",
            "2",
            "--valid_step",
            "2",
            "--bf16",
            "true",
            "--use_weights",
            "true",
            "--tensorboard",
            "true",
        )
    )
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run_dir / "args.json").read_text())["precision"].startswith("bfloat16")
    _, rows = read_csv(run_dir / "train_log.txt")
    assert len(rows) == 2 and all(float(r[3]) > 0 for r in rows)


def test_continue_from_starts_the_step_counters(train_data, trained, tmp_path):
    pkl = trained / "GP2-pretrain-step-40.pkl"
    run_dir = LSP_train.main(
        train_argv(
            train_data,
            tmp_path,
            "--init_checkpoint",
            str(pkl),
            "--continue_from",
            "40",
            "--num_optim_steps",
            "42",
            "--valid_step",
            "2",
            "--skip_eval",
        )
    )
    _, rows = read_csv(run_dir / "train_log.txt")
    assert [int(r[1]) for r in rows] == [41, 42]
    assert [int(r[2]) for r in rows] == [82, 84]
    assert (run_dir / "GP2-pretrain-step-42.pkl").is_file()
    # starting from the trained weights, the loss is already low
    assert float(rows[0][3]) < 9.0


def test_gradient_checkpointing_gives_the_same_run(train_data, tmp_path, monkeypatch):
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

    with_dropout = tmp_path / "dropout_model"
    with_dropout.mkdir()
    config = json.loads((train_data["model"] / "config.json").read_text())
    config.update(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    (with_dropout / "config.json").write_text(json.dumps(config))
    common = (
        "--num_optim_steps",
        "3",
        "--valid_step",
        "3",
        "--learning_rate",
        "1e-3",
        "--lr_schedule",
        "None",
    )

    def run(out, *extra):
        argv = train_argv(train_data, out, *common, *extra)
        argv[argv.index("--model_name_or_path") + 1] = str(with_dropout)
        return LSP_train.main(argv)

    # Counted on the MLP inside each block: the block's own forward is what transformers
    # wraps for checkpointing, so it must stay untouched.
    calls = []
    original = GPT2MLP.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT2MLP, "forward", counting)
    plain = run(tmp_path / "plain")
    n_plain = len(calls)
    recomputed = run(tmp_path / "ckpt", "--gradient_checkpointing", "true")
    assert len(calls) - n_plain > n_plain  # every block ran again in the backward passes

    _, plain_rows = read_csv(plain / "train_log.txt")
    _, recomputed_rows = read_csv(recomputed / "train_log.txt")
    # Dropout is on: the replayed RNG state must give the same masks in the recomputation.
    for a, b in zip(plain_rows, recomputed_rows, strict=True):
        assert float(a[3]) == pytest.approx(float(b[3]), abs=1e-5)
    w_plain = load_model(str(plain / "hf_model")).state_dict()
    w_recomputed = load_model(str(recomputed / "hf_model")).state_dict()
    for key in w_plain:
        assert torch.allclose(w_plain[key], w_recomputed[key], atol=1e-5), key


# Per-turn weights (docs/REFERENCE.md §1, §3): 0.0 = not learnt (no label at all), 0.5 = half weight.
WEIGHTED_LINES = [
    ("1.0 hello there", "0.0 how are you", "0.5 fine thanks", "1.0 good to hear"),
    ("1.0 what about the weather", "1.0 it is sunny", "0.5 i like tea"),
    ("0.0 tell me more", "0.5 about your day", "1.0 coffee please"),
    ("1.0 sunny and warm", "0.5 hello", "0.0 fine", "1.0 more tea please"),
]


def _expected_losses(model, tokenizer) -> tuple[float, float, list[list[int]]]:
    """(weighted, plain) first-step loss from the text, and the token ids prepro should store.

    Every turn after the first with a non-zero weight is learnt: its tokens and the
    <|endoftext|> after it, each predicted from what precedes it.
    """
    weighted_sum = weight_total = plain_sum = n_targets = 0.0
    stored = []
    for line in WEIGHTED_LINES:
        turns = [(float(t.split()[0]), tokenizer.encode(t.split(" ", 1)[1])) for t in line]
        sequence, targets = [], []  # targets: (position in sequence, weight)
        for i, (weight, ids) in enumerate(turns):
            if i > 0 and weight != 0:
                targets += [(len(sequence) + j, weight) for j in range(len(ids) + 1)]
            sequence += ids + [50256]
        last = max(p for p, _ in targets)
        kept = sequence[:last]  # prepro keeps inputs up to the last learnt token, pads to 8
        stored.append(kept + [0] * (-len(kept) % 8))
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([sequence[:-1]]))[0].float(), -1)
        for position, weight in targets:
            ce = -logprobs[position - 1, sequence[position]].item()
            weighted_sum += weight * ce
            weight_total += weight
            plain_sum += ce
            n_targets += 1
    return weighted_sum / weight_total, plain_sum / n_targets, stored


def test_use_weights_trains_on_the_weighted_loss(train_data, tmp_path):
    from lsp_data.db import FeatureDB
    from lsp_data.prepro import run_prepro
    from lsp_data.tokenizer import load_tokenizer
    from lsp_model.loading import checkpoint_state_dict

    corpus = tmp_path / "weighted.tsv"
    corpus.write_text(
        "".join(" EOS ".join(line[:-1]) + "\t" + line[-1] + "\n" for line in WEIGHTED_LINES),
        encoding="utf-8",
    )
    db, _ = run_prepro(str(corpus), max_seq_len=64, progress=False, log=lambda m: None)
    # A wide init spreads the per-token losses, so the 0.5 weights visibly move the mean.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = json.loads((train_data["model"] / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "initializer_range": 0.5}))
    torch.manual_seed(0)
    model = load_model(str(model_dir))
    start = tmp_path / "start.pkl"
    torch.save(checkpoint_state_dict(model), start)

    weighted, plain, stored = _expected_losses(model, load_tokenizer())
    with FeatureDB(db) as d:
        features = [f["input_ids"] for f in d.iter_features()]
    assert sorted(features) == sorted(stored)
    assert abs(weighted - plain) > 0.05  # the check below can tell the two apart

    def first_step_loss(use_weights: str) -> float:
        argv = train_argv(
            train_data,
            tmp_path / f"out-{use_weights}",
            "--num_optim_steps", "1", "--valid_step", "1", "--skip_eval",
            "--use_weights", use_weights,
        )  # fmt: skip
        for flag, value in [
            ("--model_name_or_path", str(model_dir)),
            ("--train_input_file", str(db)),
            ("--train_batch_size", str(len(WEIGHTED_LINES))),  # one batch: all the data
            ("--gradient_accumulation_steps", "1"),
        ]:
            argv[argv.index(flag) + 1] = value
        argv += ["--init_checkpoint", str(start)]
        _, rows = read_csv(LSP_train.main(argv) / "train_log.txt")
        return float(rows[0][3])

    assert first_step_loss("true") == pytest.approx(weighted, rel=1e-5)
    assert first_step_loss("false") == pytest.approx(plain, rel=1e-5)


def test_step_gradient_is_the_mean_over_accumulated_passes(train_data, tmp_path, monkeypatch):
    from lsp_data.loaders import BucketingDataLoader

    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        seen.append([p.grad.clone() for p in params])  # before clipping
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    LSP_train.main(
        train_argv(train_data, tmp_path, "--num_optim_steps", "1", "--valid_step", "1",
                   "--skip_eval")
    )  # fmt: skip
    (grads,) = seen

    # By hand: the same start (seed 42) and the same two passes of 4 (batch 8 / accumulation
    # 2); the step's gradient is the mean of the two passes' gradients.
    torch.manual_seed(42)
    model = load_model(str(train_data["model"])).train()
    loader = BucketingDataLoader(str(train_data["db"]), 4, 64, seed=42, prefetch=0)
    passes = loader.iter_epoch(0)
    for _ in range(2):
        input_ids, position_ids, _, labels = next(passes)
        loss, _ = model(input_ids, position_ids, None, labels)
        (loss / 2).backward()
    loader.close()
    expected = [p.grad for p in model.parameters() if p.requires_grad]
    assert len(grads) == len(expected)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(
    "schedule, flags, expected",
    [
        # noam, docs/REFERENCE.md §6: lr * 1e4 * d**-0.5 * min((s+1)**-0.5, (s+1) * warmup**-1.5), d = 32
        (
            "noam",
            ("--warmup_steps", "2"),
            [3e-3 * 1e4 * 32**-0.5 * min((s + 1) ** -0.5, (s + 1) * 2**-1.5) for s in range(4)],
        ),
        # BERT over 4 steps, warmup proportion 0.5: f(s/4) = 0, 0.5, then 1, 0.5 decaying
        ("BERT", ("--warmup_proportion", "0.5"), [0.0, 1.5e-3, 3e-3, 1.5e-3]),
        ("None", (), [3e-3] * 4),
    ],
)
def test_optimizer_steps_use_the_scheduled_learning_rate(
    train_data, tmp_path, monkeypatch, schedule, flags, expected
):
    used = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        used.append([group["lr"] for group in self.param_groups])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    argv = train_argv(
        train_data, tmp_path, "--num_optim_steps", "4", "--valid_step", "4", "--skip_eval",
        *flags,
    )  # fmt: skip
    argv[argv.index("--lr_schedule") + 1] = schedule
    LSP_train.main(argv)
    assert len(used) == 4
    for lrs, want in zip(used, expected):
        assert lrs == [pytest.approx(want, rel=1e-9, abs=1e-15)] * len(lrs)


def test_resume_continues_exactly_with_dropout(train_data, tmp_path):
    # Dropout makes the random state part of what a checkpoint must restore.
    model_dir = tmp_path / "dropout_model"
    model_dir.mkdir()
    config = json.loads((train_data["model"] / "config.json").read_text())
    config.update(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    (model_dir / "config.json").write_text(json.dumps(config))
    argv = train_argv(
        train_data, tmp_path, "--num_optim_steps", "4", "--valid_step", "4", "--save_step", "2",
        "--keep_checkpoints", "3", "--skip_eval",
    )  # fmt: skip
    argv[argv.index("--model_name_or_path") + 1] = str(model_dir)
    run = LSP_train.main(argv)
    _, rows = read_csv(run / "train_log.txt")
    final = load_model(str(run / "hf_model")).state_dict()

    assert LSP_train.main(argv + ["--resume", str(run / "checkpoints" / "step-2")]) == run
    _, resumed_rows = read_csv(run / "train_log.txt")
    # same steps, step counters, losses and token counts (epoch time aside), same weights
    assert [r[:7] for r in resumed_rows] == [r[:7] for r in rows]
    resumed = load_model(str(run / "hf_model")).state_dict()
    assert all(torch.equal(final[k], resumed[k]) for k in final)


# ------------------------------------------------------------ the run folder across sessions


def _pkl_steps(run) -> list[int]:
    return sorted(int(p.stem.rsplit("-", 1)[1]) for p in run.glob("GP2-pretrain-step-*.pkl"))


def test_weights_are_pruned_leftovers_swept_and_disk_use_logged(train_data, tmp_path, capsys):
    common = ("--valid_step", "2", "--keep_checkpoints", "2", "--skip_eval")
    run = LSP_train.main(train_argv(train_data, tmp_path, "--num_optim_steps", "6", *common))
    err = capsys.readouterr().err
    assert _pkl_steps(run) == [4, 6]  # --keep_checkpoints covers the .pkl files too
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4", "step-6"]
    assert err.count("run folder uses") == 7  # 3 weight saves, 3 checkpoints, the end
    assert "done: 6 optimizer steps" in err and "MB" in err.splitlines()[-1]

    # What a run killed mid-save leaves; the resumed session removes it, and only it.
    real = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    leftovers = [
        run / ".GP2-pretrain-step-8.pkl.tmp-0badf00d",
        run / ".hf_model.tmp-0badf00d",
        run / "checkpoints" / ".step-8.tmp-0badf00d",
        run / ".trash-hf_model-0badf00d",
    ]
    leftovers[0].write_bytes(b"half a pickle")
    for folder in leftovers[1:]:
        folder.mkdir()
        (folder / "half").write_bytes(b"x")
    assert (
        LSP_train.main(
            train_argv(
                train_data, tmp_path, "--num_optim_steps", "6", *common, "--resume", "latest"
            )
        )
        == run
    )
    assert not any(p.exists() for p in leftovers)
    for path, data in real.items():
        if path.name not in ("train_log.txt", "args.json"):
            assert path.read_bytes() == data, path


def test_resume_refuses_changed_run_defining_arguments(train_data, tmp_path, capsys):
    common = ("--num_optim_steps", "2", "--valid_step", "2", "--skip_eval")
    run = LSP_train.main(train_argv(train_data, tmp_path, *common))
    args_before = (run / "args.json").read_text()
    changed = train_argv(
        train_data, tmp_path, *common, "--resume", "latest", "--train_batch_size", "4"
    )
    changed[changed.index("--learning_rate") + 1] = "1e-3"
    assert LSP_train.main(changed) == 1
    err = capsys.readouterr().err
    assert "--train_batch_size 8 -> 4" in err and "--learning_rate 0.003 -> 0.001" in err
    assert "--resume_force" in err and "Traceback" not in err
    assert (run / "args.json").read_text() == args_before
    # free to change: how long, how often, what is shown
    free = train_argv(train_data, tmp_path, *common, "--resume", "latest", "--save_step", "7")
    free[free.index("--num_optim_steps") + 1] = "3"
    assert LSP_train.main(free) == run
    assert LSP_train.main(changed + ["--resume_force", "true"]) == run
    assert "continuing with changed arguments" in capsys.readouterr().err
    assert json.loads((run / "args.json").read_text())["learning_rate"] == 1e-3
    assert json.loads((run / "args.before-step-3.json").read_text())["learning_rate"] == 3e-3


def test_unwritable_output_and_log_dirs_fail_before_the_model_loads(
    train_data, tmp_path, capsys, monkeypatch
):
    import errno
    import tempfile
    from pathlib import Path

    from gpt2_training import trainer

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(trainer, "load_model", no_model)
    (tmp_path / "a_file").write_text("")
    argv = train_argv(train_data, tmp_path / "a_file" / "runs")
    assert LSP_train.main(argv) == 1
    assert "--output_dir" in capsys.readouterr().err

    # A read-only mount (as non-root, chmod would do; root writes anyway, hence the patch).
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_temporary_file = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == read_only:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(trainer.tempfile, "TemporaryFile", temporary_file)
    for flag in ("--output_dir", "--log_dir"):
        argv = train_argv(train_data, tmp_path / "out", flag, str(read_only / "new"))
        assert LSP_train.main(argv) == 1
        err = capsys.readouterr().err
        assert f"error: {flag} {read_only / 'new'}: cannot write in {read_only} (Read-only" in err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # a run that cannot start leaves nothing


def test_new_run_never_writes_into_an_existing_run_folder(train_data, tmp_path, monkeypatch):
    # Run names count seconds: a second run started within the same second gets its own
    # folder instead of appending to the first one's logs.
    from gpt2_training import trainer

    monkeypatch.setattr(trainer, "run_folder_name", lambda cfg, n_gpu: "GPT2.same-second")
    steps = ("--num_optim_steps", "2", "--valid_step", "2", "--skip_eval")
    first = LSP_train.main(train_argv(train_data, tmp_path, *steps))
    before = (first / "train_log.txt").read_bytes()
    second = LSP_train.main(train_argv(train_data, tmp_path, *steps))
    third = LSP_train.main(train_argv(train_data, tmp_path, *steps))
    assert [first.name, second.name, third.name] == [
        "GPT2.same-second",
        "GPT2.same-second.1",
        "GPT2.same-second.2",
    ]
    assert (first / "train_log.txt").read_bytes() == before
    assert len(read_csv(second / "train_log.txt")[1]) == 2
