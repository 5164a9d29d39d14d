"""Property-based fuzzing of the model loaders: ``config.json`` and weights files.

Generated configs (random keys, values of every JSON type, invalid JSON, JSON that is not
an object) and checkpoints (random bytes, valid files truncated or with bytes flipped)
go through ``read_config`` / ``load_model`` / ``load_state_dict_file``. The promise: a
model or a ``ModelLoadError`` whose message names the file; no other exception.

Runs are reproducible (``derandomize``). ``FAULTS_SOAK=1`` multiplies every example
budget by 10. Example counts: ``pytest tests/faults/test_fuzz_model_files.py
--hypothesis-show-statistics``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsp_model.loading import (
    ModelLoadError,
    checkpoint_state_dict,
    known_config_keys,
    load_model,
    load_state_dict_file,
    read_config,
    save_hf_folder,
)
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

SOAK = os.environ.get("FAULTS_SOAK", "").strip().lower() not in ("", "0", "false", "no")
SCALE = 10 if SOAK else 1


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    # Hypothesis runs many examples in one test call: a fresh folder per example.
    with tempfile.TemporaryDirectory(prefix="fuzz-model-") as folder:
        yield Path(folder)


# A model small enough to build in milliseconds; the fuzzed configs start from it.
BASE = {
    "model_type": "gpt2",
    "vocab_size": 64,
    "n_positions": 16,
    "n_ctx": 16,
    "n_embd": 8,
    "n_layer": 1,
    "n_head": 2,
}
KNOWN = sorted(known_config_keys())
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-2, max_value=40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
config_keys = st.sampled_from(KNOWN) | st.text(min_size=1, max_size=12)


def expect_model_or_named_error(load, file: Path) -> object | None:
    try:
        return load()
    except ModelLoadError as err:
        assert str(file) in str(err), str(err)
        return None


@fuzz(200)
@given(
    changes=st.dictionaries(config_keys, json_values, max_size=4),
    drop=st.sets(st.sampled_from(sorted(BASE))),
)
def test_fuzzed_config_builds_a_model_or_is_refused(changes, drop):
    config = {k: v for k, v in BASE.items() if k not in drop}
    config.update(changes)
    with scratch() as folder:
        file = folder / "config.json"
        file.write_text(json.dumps(config))
        parsed = expect_model_or_named_error(lambda: read_config(file), file)
        if parsed is None:
            return
        assert isinstance(parsed, GPT2Config)
        # Building is only tried for configs of a test's size (random sizes can be large).
        if parsed.n_embd * parsed.n_layer <= 4096 and parsed.vocab_size * parsed.n_embd <= 10**6:
            model = expect_model_or_named_error(lambda: load_model(folder), file)
            assert model is None or isinstance(model, GPT2LMHeadModel)


@fuzz(200)
@given(
    text=st.one_of(
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.text(max_size=200),
        st.from_regex(r"\A\{.{0,40}\Z", fullmatch=True),
        json_values.map(json.dumps),  # valid JSON, mostly not an object
    )
)
def test_fuzzed_config_text(text):
    with scratch() as folder:
        file = folder / "config.json"
        file.write_bytes(text.encode("utf-8", "surrogatepass"))
        expect_model_or_named_error(lambda: read_config(file), file)


@fuzz(100)
@given(data=st.binary(max_size=400))
def test_random_bytes_as_weights(data):
    with scratch() as folder:
        for file in (folder / "w.pkl", folder / "w.safetensors"):
            file.write_bytes(data)
            loaded = expect_model_or_named_error(lambda f=file: load_state_dict_file(f), file)
            assert loaded is None


def _reference_files() -> dict[str, bytes]:
    """A small model's weights as every format this toolkit reads, as bytes."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in BASE.items() if k != "n_ctx"}))
    sd = checkpoint_state_dict(model)
    out = {}
    for name, zip_format in (("zip.pkl", True), ("legacy.pkl", False)):
        buf = io.BytesIO()
        torch.save(sd, buf, _use_new_zipfile_serialization=zip_format)
        out[name] = buf.getvalue()
    with scratch() as folder:
        out["model.safetensors"] = (
            save_hf_folder(model, None, folder / "hf") / "model.safetensors"
        ).read_bytes()
    return out


REFERENCE = _reference_files()


@fuzz(150)
@given(
    kind=st.sampled_from(sorted(REFERENCE)),
    cut=st.floats(min_value=0, max_value=1, exclude_max=True),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
    with_checksum=st.booleans(),
)
def test_truncated_or_flipped_weights(kind, cut, flips, with_checksum):
    data = bytearray(REFERENCE[kind])
    truncate = not flips
    if truncate:
        data = data[: int(len(data) * cut)]
    for where, mask in flips:
        data[int(len(data) * where)] ^= mask
    with scratch() as folder:
        file = folder / kind
        if with_checksum:  # saved by the toolkit, then damaged: always detected
            digest = hashlib.sha256(REFERENCE[kind]).hexdigest()
            (folder / f"{kind}.sha256").write_text(f"{digest}  {kind}\n")
        file.write_bytes(bytes(data))
        sd = expect_model_or_named_error(lambda: load_state_dict_file(file), file)
        if with_checksum and bytes(data) != REFERENCE[kind]:
            assert sd is None  # any change of the bytes is caught by the checksum
        if sd is not None:
            # Undetectable without a checksum (e.g. a flip inside a tensor): it must still
            # load into the model or be refused by name, nothing else.
            with scratch() as cfg:
                (cfg / "config.json").write_text(json.dumps(BASE))
                expect_model_or_named_error(lambda: load_model(cfg, file), file)
