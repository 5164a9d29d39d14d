"""gpt2_training.args: TrainConfig, its command line, --config files and the schedule registry."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from gpt2_training.args import (
    ArgumentError,
    TrainConfig,
    build_parser,
    field_docs,
    parse_args,
)
from lsp_common.cli import parse_bool
from lsp_model.optim import SCHEDULES, lr_at_step

# docs/REFERENCE.md §6: the published flags and their defaults.
PUBLISHED = {
    "model_name_or_path": None,
    "init_checkpoint": None,
    "train_input_file": None,
    "eval_input_file": None,
    "output_dir": None,
    "log_dir": None,
    "seed": 42,
    "max_seq_length": 128,
    "skip_eval": False,
    "continue_from": 0,
    "train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "eval_batch_size": 4,
    "learning_rate": 1e-5,
    "num_optim_steps": 1000000,
    "valid_step": 10000,
    "warmup_proportion": 0.1,
    "warmup_steps": 16000,
    "normalize_data": True,
    "lr_schedule": "noam",
    "loss_scale": 0,
    "no_token_id": True,
    "pbar": True,
    "local_rank": -1,
    "config": None,
}


def _actions() -> dict:
    return {a.dest: a for a in build_parser()._actions}


def _required(data) -> dict[str, str]:
    return {
        "model_name_or_path": str(data["model"]),
        "train_input_file": str(data["db"]),
        "eval_input_file": str(data["valid"]),
    }


def _flags(values: dict) -> list[str]:
    return [item for k, v in values.items() for item in (f"--{k}", str(v))]


def test_published_flags_keep_their_defaults_and_are_documented():
    actions = _actions()
    for name, default in PUBLISHED.items():
        assert actions[name].default == default, name
        assert actions[name].help, name
    assert actions["lr_schedule"].choices == ["noam", "noamwd", "BERT", "None"]
    assert "--local-rank" in actions["local_rank"].option_strings
    assert actions["eval_step"].default == 0  # validation only with --valid_step's saves
    # The published fp16=True became "neither flag given": the hardware's fastest native
    # precision, which is still fp16 on the GPUs of 2019 (tests/gpt2_training/test_precision.py).
    assert actions["fp16"].default is None and actions["bf16"].default is None


def test_parsed_defaults(train_data, tmp_path):
    cfg = parse_args(_flags({**_required(train_data), "output_dir": tmp_path}))
    for name, default in PUBLISHED.items():
        if name not in ("config", *_required(train_data), "output_dir"):
            assert getattr(cfg, name) == default, name
    assert cfg.micro_batch_size == 2


def test_every_field_has_a_docstring_that_is_its_help():
    docs = field_docs(TrainConfig)
    actions = _actions()
    for f in dataclasses.fields(TrainConfig):
        assert len(docs.get(f.name, "")) > 10, f"{f.name} has no docstring"
        assert actions[f.name].help.startswith(docs[f.name].replace("%", "%%")), f.name
    assert "save GP2-pretrain-step-N.pkl + HF folder and validate" in actions["valid_step"].help
    assert "without saving" in actions["eval_step"].help
    assert actions["config"].help == "JSON file of arguments; command-line flags win"
    assert actions["lr_schedule"].help == (
        "learning-rate schedule: noam: linear warmup over warmup_steps, then inverse square "
        "root decay (scaled by n_embd**-0.5); noamwd: noam, halved at step 500 and at every "
        "1000 steps after; BERT: linear warmup over warmup_proportion of num_optim_steps, then "
        "linear decay to 0; None: the base learning rate at every step"
    )
    text = " ".join(build_parser().format_help().split())
    assert text.startswith("usage: LSP_train.py [-h] [--model_name_or_path MODEL_NAME_OR_PATH]")
    description = "Train or fine-tune a GPT-2 dialogue model (DialoGPT) on a prepro database."
    assert f"[--config CONFIG] {description} options:" in text
    assert "--valid_step VALID_STEP every N optimizer steps" in text
    assert "and validate (default: 10000)" in text  # defaults are shown


def test_boolean_strings():
    for word in ("true", "True", " TRUE ", "1", "yes", "YES", "y", "Y", "on", "On", True):
        assert parse_bool(word) is True, word
    for word in ("false", "FALSE", "0", "no", "No", "n", "N", "off", "OFF", False):
        assert parse_bool(word) is False, word
    for word in ("maybe", "", "2", "tru"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected true or false"):
            parse_bool(word)


@pytest.mark.parametrize(
    "flag, value, expected",
    [("fp16", "TRUE", True), ("pbar", "0", False), ("shuffle_data", "off", False)],
)
def test_boolean_flags_take_strings(train_data, tmp_path, flag, value, expected):
    argv = _flags({**_required(train_data), "output_dir": tmp_path, flag: value})
    assert getattr(parse_args(argv), flag) is expected


def test_config_file_and_flags_give_the_same_config(train_data, tmp_path):
    values = {
        "seed": 7,
        "fp16": False,
        "normalize_data": "false",
        "learning_rate": 2e-4,
        "lr_schedule": "BERT",
        "warmup_proportion": 0.5,
        "save_step": 3,
        "eval_step": 2,
        "log_dir": str(tmp_path / "logs"),
        "gradient_accumulation_steps": 1,
    }
    base = _flags({**_required(train_data), "output_dir": tmp_path})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    from_file = parse_args([*base, "--config", str(path)])
    assert from_file == parse_args([*base, *_flags(values)])
    assert from_file.fp16 is False and from_file.normalize_data is False
    assert from_file.eval_step == 2 and from_file.learning_rate == 2e-4


@pytest.mark.parametrize(
    "content, message",
    [
        ({"valid_step": 2.5}, "valid_step: expected an integer, got 2.5"),
        ({"valid_step": True}, "valid_step: expected an integer"),
        ({"learning_rate": False}, "learning_rate: expected a number"),
        ({"fp16": "maybe"}, "fp16: expected true or false"),
        ({"lr_schedule": "cosine"}, "lr_schedule: must be one of ['noam', 'noamwd', 'BERT'"),
        ({"config": "other.json"}, "unknown argument 'config'"),
        ([1, 2], "expected a JSON object"),
        ("{bad", "not valid JSON (line 1"),
    ],
)
def test_bad_config_files_are_named(train_data, tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    argv = [*_flags({**_required(train_data), "output_dir": tmp_path}), "--config", str(path)]
    with pytest.raises(ArgumentError) as err:
        parse_args(argv)
    assert str(err.value).startswith(f"--config {path}: ")
    assert message in str(err.value)


def test_config_values_are_converted_as_flags_are(train_data, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"skip_eval": "false", "valid_step": 4.0, "seed": "9"}))
    argv = [*_flags({**_required(train_data), "output_dir": tmp_path}), "--config", str(path)]
    cfg = parse_args(argv)
    assert cfg.skip_eval is False and cfg.valid_step == 4 and cfg.seed == 9


def test_missing_config_file(train_data, tmp_path):
    argv = [*_flags({**_required(train_data), "output_dir": tmp_path}), "--config", "nope.json"]
    with pytest.raises(ArgumentError, match="--config nope.json: No such file"):
        parse_args(argv)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eval_step": -1}, "--eval_step must be >= 0, got -1"),
        ({"eval_step": 2, "skip_eval": True}, "--eval_step asks for validation"),
        ({"num_prefetch": -1}, "--num_prefetch must be >= 0, got -1"),
        ({"continue_from": -1}, "--continue_from must be >= 0, got -1"),
        ({"save_step": 0}, "--save_step must be at least 1, got 0"),
        ({"keep_checkpoints": 0}, "--keep_checkpoints must be at least 1, got 0"),
        ({"valid_step": 0}, "--valid_step must be at least 1, got 0"),
        ({"resume": "latest", "continue_from": 3}, "drop --continue_from"),
        (
            {"lr_schedule": "noamwd", "warmup_steps": 0},
            "--warmup_steps must be at least 1 for the noamwd schedule, got 0",
        ),
        (
            {"lr_schedule": "BERT", "warmup_proportion": 1.5},
            "--warmup_proportion must be in (0, 1] for the BERT schedule, got 1.5",
        ),
        ({"lr_schedule": "cosine"}, "--lr_schedule: unknown lr schedule 'cosine'"),
    ],
)
def test_config_checks_itself_however_it_is_made(train_data, tmp_path, changes, message):
    values = {**_required(train_data), "output_dir": str(tmp_path), **changes}
    with pytest.raises(ArgumentError) as err:
        TrainConfig(**values)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"train_input_file": None},
            "--train_input_file is required (a database folder made by prepro.py)",
        ),
        (
            {"model_name_or_path": None},
            "--model_name_or_path is required: a folder with config.json (e.g. configs/117M), "
            "a Hugging Face folder, or a hub name",
        ),
        ({"output_dir": None}, "--output_dir is required"),
        (
            {"eval_input_file": None},
            "--eval_input_file is required unless --skip_eval is given",
        ),
        (
            {"eval_step": 2, "skip_eval": True},
            "--eval_step asks for validation, --skip_eval for none: drop one",
        ),
        (
            {"resume": "latest", "continue_from": 3},
            "--resume restores the step counters itself; drop --continue_from",
        ),
    ],
)
def test_whole_messages(train_data, tmp_path, changes, message):
    values = {**_required(train_data), "output_dir": str(tmp_path), **changes}
    with pytest.raises(ArgumentError) as err:
        TrainConfig(**values)
    assert str(err.value) == message


def test_checks_accept_the_boundaries(train_data, tmp_path):
    cfg = TrainConfig(
        **_required(train_data),
        output_dir=str(tmp_path),
        eval_step=0,
        num_prefetch=0,
        continue_from=0,
        save_step=1,
        keep_checkpoints=1,
        lr_schedule="BERT",
        warmup_proportion=1.0,
        warmup_steps=0,  # only the noam schedules read it
        learning_rate=0.0,
        loss_scale=0.0,
    )
    assert cfg.to_dict()["warmup_proportion"] == 1.0
    TrainConfig(**_required(train_data), output_dir=str(tmp_path), warmup_steps=1)
    TrainConfig(**_required(train_data), output_dir=str(tmp_path), skip_eval=True, eval_step=0)
    TrainConfig(**_required(train_data), output_dir=str(tmp_path), resume="latest")
    for no_checkpoint in ("None", "none", ""):  # the published way to say "random init"
        TrainConfig(
            **_required(train_data), output_dir=str(tmp_path), init_checkpoint=no_checkpoint
        )


def test_a_schedule_in_the_registry_is_a_choice(train_data, tmp_path, monkeypatch):
    def halved(step, base_lr, params):
        """half the base learning rate (50% of it)"""
        return base_lr / 2

    monkeypatch.setitem(SCHEDULES, "half", halved)
    action = _actions()["lr_schedule"]
    assert action.choices[-1] == "half"
    assert action.help.endswith("; half: half the base learning rate (50%% of it)")
    assert "half: half the base learning rate (50% of it)" in build_parser().format_help()
    argv = _flags({**_required(train_data), "output_dir": tmp_path, "lr_schedule": "half"})
    assert parse_args(argv).lr_schedule == "half"
    kw = dict(warmup_steps=1, warmup_proportion=0.1, num_optim_steps=10, n_embd=8)
    assert lr_at_step("half", 3, 1e-3, **kw) == 5e-4


def test_schedule_ranges_and_their_boundaries():
    kw = dict(warmup_steps=1, warmup_proportion=1.0, num_optim_steps=1, n_embd=4)
    for name in SCHEDULES:  # the smallest allowed values are allowed
        assert lr_at_step(name, 0, 1e-3, **kw) >= 0.0
    assert lr_at_step("BERT", 5, 1e-3, **kw) == 0.0  # past the end with all-warmup: 0, no error
    assert lr_at_step("noamwd", 0, 1e-3, **kw) == lr_at_step("noam", 0, 1e-3, **kw)
    for name, changes, message in [
        ("BERT", {"num_optim_steps": 0}, "the BERT schedule needs num_optim_steps at least 1"),
        ("BERT", {"warmup_proportion": 0.0}, "the BERT schedule needs warmup_proportion in (0, 1]"),
        ("noamwd", {"warmup_steps": 0}, "the noamwd schedule needs warmup_steps at least 1"),
    ]:
        with pytest.raises(ValueError) as err:
            lr_at_step(name, 0, 1e-3, **{**kw, **changes})
        assert str(err.value) == f"{message}, got {next(iter(changes.values()))}"
