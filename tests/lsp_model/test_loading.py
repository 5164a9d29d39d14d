import pickle
import re
from pathlib import Path

import pytest
import torch
import transformers

import lsp_model.hub
from lsp_data.tokenizer import load_tokenizer
from lsp_model.hub import resolve_model_source
from lsp_model.loading import (
    ModelLoadError,
    checkpoint_state_dict,
    load_model,
    load_state_dict_file,
    normalize_state_dict,
    save_hf_folder,
)
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "config.json"
INPUT = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79], [2, 71, 82, 81, 82, 84, 59, 0]])
HASH = "0123456789abcdef0123456789abcdef01234567"


def small_config(n_embd: int = 32) -> GPT2Config:
    return GPT2Config(
        vocab_size=97,
        n_positions=32,
        n_embd=n_embd,
        n_layer=2,
        n_head=4,
        bos_token_id=96,
        eos_token_id=96,
    )


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(INPUT)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A trained-looking small model and a folder holding only its config."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(small_config()).eval()
    folder = tmp_path_factory.mktemp("cfg")
    model.config.to_json_file(folder / "config.json")
    return model, folder


def test_own_checkpoint(reference, tmp_path):
    model, folder = reference
    ckpt = tmp_path / "GP2-pretrain-step-5.pkl"
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, ckpt)
    loaded = load_model(str(folder), str(ckpt))
    assert isinstance(loaded, GPT2LMHeadModel) and not loaded.training
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(logits_of(loaded), logits_of(model), rtol=0, atol=0)


def test_checkpoint_state_dict_loads_in_plain_transformers(reference, tmp_path):
    model, folder = reference
    wrapped = torch.nn.Module()
    wrapped.module = model  # what DistributedDataParallel looks like from outside
    sd = checkpoint_state_dict(wrapped)
    assert all(not k.startswith("module.") for k in sd)
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]
    assert sd["transformer.wte.weight"].data_ptr() != model.transformer.wte.weight.data_ptr()
    ckpt = tmp_path / "GP2-pretrain-step-10.pkl"
    torch.save(sd, ckpt)

    plain = transformers.GPT2LMHeadModel(small_config())
    plain.load_state_dict(torch.load(ckpt, weights_only=True))  # strict
    # Plain transformers computes the same tanh-GELU in seven operations, ours in one
    # (lsp_model/modeling.py): equal to float rounding, not bit for bit.
    torch.testing.assert_close(
        plain.eval()(INPUT).logits.detach(), logits_of(model), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        logits_of(load_model(folder, ckpt)), logits_of(model), rtol=0, atol=0
    )


def test_original_dialogpt_naming(reference, tmp_path):
    model, folder = reference
    sd = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            sd["module.lm_head.decoder.weight"] = value.clone()
        else:
            sd["module." + key.removeprefix("transformer.")] = value.clone()
    # old GPT-2 code kept the causal mask as a buffer named attn.bias
    sd["module.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    sd["module.h.1.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    ckpt = tmp_path / "medium_ft.pkl"
    # the released DialoGPT files predate torch's zip format
    torch.save(sd, ckpt, _use_new_zipfile_serialization=False)
    loaded = load_model(folder, ckpt)
    torch.testing.assert_close(logits_of(loaded), logits_of(model), rtol=0, atol=0)

    normalized = normalize_state_dict(sd)
    assert "transformer.h.0.attn.c_attn.bias" in normalized  # a parameter, kept
    assert "transformer.h.0.attn.bias" not in normalized  # a stale buffer, dropped
    assert "lm_head.weight" in normalized and "transformer.ln_f.bias" in normalized


def test_half_precision_safetensors_checkpoint(reference, tmp_path):
    from safetensors.torch import save_file

    model, folder = reference
    sd = {k: v.half() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    ckpt = tmp_path / "half.safetensors"
    save_file(sd, str(ckpt))
    loaded = load_model(folder, ckpt)
    assert loaded.transformer.wte.weight.dtype == torch.float32
    torch.testing.assert_close(logits_of(loaded), logits_of(model), rtol=1e-2, atol=1e-2)


def test_hf_folder_roundtrip_and_plain_transformers(tmp_path):
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config.from_json_file(TINY_CONFIG)).eval()
    tokenizer = load_tokenizer()
    out = save_hf_folder(model, tokenizer, tmp_path / "hf")
    assert out == tmp_path / "hf"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary folders left

    ours = load_model(out)
    plain = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(plain) is transformers.GPT2LMHeadModel
    assert plain.lm_head.weight.data_ptr() == plain.transformer.wte.weight.data_ptr()
    expected = logits_of(model)
    torch.testing.assert_close(logits_of(ours), expected, rtol=0, atol=0)
    # (the same GELU in seven operations: equal to float rounding)
    torch.testing.assert_close(plain.eval()(INPUT).logits.detach(), expected, rtol=0, atol=1e-5)

    auto_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "Hello there! How are you? <|endoftext|>"
    assert auto_tok.encode(text) == tokenizer.encode(text)
    assert auto_tok.eos_token_id == 50256


def test_save_hf_folder_replaces_and_is_atomic(reference, tmp_path):
    model, _ = reference
    target = tmp_path / "out"
    save_hf_folder(model, None, target)
    (target / "marker").write_text("old")

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_hf_folder(model, BrokenTokenizer(), target)
    assert (target / "marker").read_text() == "old"  # the previous save is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    save_hf_folder(model, None, target)
    assert not (target / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def make_hub_cache(root: Path, model: GPT2LMHeadModel, repo: str = "microsoft/DialoGPT-small"):
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(HASH)  # the hub writes no trailing newline
    snapshot = repo_dir / "snapshots" / HASH
    model.save_pretrained(snapshot)
    return snapshot


def test_hub_name_from_cache_offline(reference, tmp_path, monkeypatch):
    model, _ = reference
    snapshot = make_hub_cache(tmp_path / "hub", model)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model_source("microsoft/DialoGPT-small")
    assert resolved.resolve() == snapshot.resolve()
    loaded = load_model("microsoft/DialoGPT-small")
    torch.testing.assert_close(logits_of(loaded), logits_of(model), rtol=0, atol=0)

    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # HF_HOME/hub is the default cache
    assert resolve_model_source("microsoft/DialoGPT-small").resolve() == snapshot.resolve()


def test_hub_snapshot_without_weights(tmp_path, monkeypatch):
    snapshot = make_hub_cache(tmp_path / "hub", GPT2LMHeadModel(small_config()))
    (snapshot / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="has no weights"):
        load_model("microsoft/DialoGPT-small")


def test_hub_name_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        resolve_model_source("microsoft/DialoGPT-medium")
    msg = str(err.value)
    assert "microsoft/DialoGPT-medium" in msg and "HF_HUB_OFFLINE" in msg
    assert "--model_name_or_path" in msg


def test_hub_unreachable(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(kwargs)
        raise LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(
        lsp_model.hub, "_repo_files_online", lambda repo_id: None
    )  # no real request
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError, match="unreachable") as err:
        resolve_model_source("microsoft/DialoGPT-small")
    assert "microsoft/DialoGPT-small" in str(err.value)
    assert calls[0]["local_files_only"] is True  # the cache is tried first
    assert not calls[-1].get("local_files_only")
    assert "config.json" in calls[0]["allow_patterns"]


def test_source_errors(tmp_path):
    assert resolve_model_source(None) is None
    assert resolve_model_source("None") is None
    assert resolve_model_source(tmp_path) == tmp_path
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_source(str(tmp_path / "no" / "such" / "folder"))
    (tmp_path / "x.pkl").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        resolve_model_source(str(tmp_path / "x.pkl"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    torch.manual_seed(0)
    big = GPT2LMHeadModel(small_config(n_embd=64))
    ckpt = tmp_path / "big.pkl"
    torch.save(big.state_dict(), ckpt)
    with pytest.raises(ModelLoadError) as err:
        load_model(None, ckpt, config=small_config(n_embd=32))
    msg = str(err.value)
    assert str(ckpt) in msg and "transformer.wte.weight" in msg
    assert "(97, 64)" in msg and "(97, 32)" in msg


def test_missing_and_unexpected_keys(reference, tmp_path):
    model, folder = reference
    sd = dict(model.state_dict())
    del sd["transformer.h.1.mlp.c_fc.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(ModelLoadError, match="missing keys.*h.1.mlp.c_fc.weight"):
        load_model(folder, tmp_path / "missing.pt")
    sd = dict(model.state_dict())
    sd["transformer.h.2.ln_1.weight"] = torch.ones(32)
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(ModelLoadError, match="unexpected keys.*h.2.ln_1.weight"):
        load_model(folder, tmp_path / "extra.pt")
    sd = dict(model.state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    torch.save(sd, tmp_path / "untied.pt")
    with pytest.raises(ModelLoadError, match="ties them"):
        load_model(folder, tmp_path / "untied.pt")


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_unsafe_pickle_is_refused(reference, tmp_path):
    _, folder = reference
    marker = tmp_path / "pwned"
    for name, save in (
        ("plain.pkl", lambda obj, f: pickle.dump(obj, f, protocol=2)),
        ("torch.pt", lambda obj, f: torch.save(obj, f)),
    ):
        path = tmp_path / name
        with open(path, "wb") as f:
            save({"transformer.wte.weight": torch.zeros(2), "x": _Exploit(marker)}, f)
        with pytest.raises(ModelLoadError, match="could run code") as err:
            load_state_dict_file(path)
        message = str(err.value)
        assert str(path) in message and re.search(
            r"would import and call [\w.]+, so it could run code", message
        )
        # Plainly a refusal for safety: no "corrupt", and never torch's advice to load it
        # with the protection off.
        assert "weights_only" not in message and "False" not in message
        assert "corrupt" not in message and "trusted" not in message
        with pytest.raises(ModelLoadError, match="could run code"):
            load_model(folder, path)
        assert not marker.exists()


def test_bad_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="junk.pkl"):
        load_state_dict_file(tmp_path / "junk.pkl")
    # Text whose first bytes the weights-only reader takes for opcodes ("h": memo lookup,
    # "}": empty dict then "h"...): refused with a message, not a KeyError/IndexError.
    for i, text in enumerate((b"hello", b"}hello world", b"(lp0\nI1\na.", b"\x80\x02X")):
        (tmp_path / f"text{i}.pkl").write_bytes(text)
        with pytest.raises(ModelLoadError, match=f"text{i}.pkl"):
            load_state_dict_file(tmp_path / f"text{i}.pkl")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="not a state dict"):
        load_state_dict_file(tmp_path / "list.pt")


def test_random_init_when_no_weights(reference):
    model, folder = reference
    for ckpt in (None, "None", "none"):
        fresh = load_model(folder, ckpt)
        assert fresh.config.n_embd == 32
        assert not torch.equal(fresh.transformer.wte.weight, model.transformer.wte.weight)
    fresh = load_model(None, None, config=small_config())
    assert fresh.lm_head.weight is fresh.transformer.wte.weight


# ----------------------------------------------------------------------------- config keys

# microsoft/DialoGPT-small's config.json as published on the hub (transformers 2.x era).
DIALOGPT_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"conversational": {"max_length": 1000}},
    "vocab_size": 50257,
}
# What transformers 4.x wrote on save_pretrained (keys that 5.x no longer writes).
TRANSFORMERS4_EXTRA = {
    "_name_or_path": "microsoft/DialoGPT-small",
    "torch_dtype": "float32",
    "transformers_version": "4.46.1",
    "n_inner": None,
    "reorder_and_upcast_attn": False,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "use_cache": True,
    "_attn_implementation_autoset": True,
    "output_past": True,
    "pruned_heads": {},
    "num_labels": 1,
    "finetuning_task": None,
    "use_bfloat16": False,
    "torchscript": False,
}


def write_config(folder: Path, config: dict) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_config_typo_is_an_error_naming_key_and_file(tmp_path):
    for typo in ("n_layr", "num_layer", "N_LAYER"):
        folder = write_config(tmp_path / typo, {**DIALOGPT_CONFIG, "n_layer": 2, typo: 2})
        with pytest.raises(ModelLoadError) as err:
            load_model(folder)
        assert repr(typo) in str(err.value) and str(folder / "config.json") in str(err.value)
    two = write_config(tmp_path / "two", {"n_layr": 2, "n_emb": 8})
    with pytest.raises(ModelLoadError, match="unknown keys 'n_emb', 'n_layr'"):
        load_model(two)


def test_published_and_saved_configs_load(tmp_path):
    small = {"n_embd": 16, "n_head": 2, "n_layer": 1, "n_positions": 16, "n_ctx": 16}
    for name, config in (
        ("dialogpt", {**DIALOGPT_CONFIG, **small}),
        ("transformers4", {**DIALOGPT_CONFIG, **TRANSFORMERS4_EXTRA, **small}),
    ):
        model = load_model(write_config(tmp_path / name, config))
        assert model.config.n_layer == 1
    for size in ("117M", "345M", "762M", "tiny"):  # the repository's own configs
        config = lsp_model.loading.read_config(TINY_CONFIG.parents[1] / size / "config.json")
        assert config.n_layer in (2, 12, 24, 36)
    # a folder written by Hugging Face's own save_pretrained (config, generation config)
    torch.manual_seed(0)
    plain = transformers.GPT2LMHeadModel(transformers.GPT2Config(**small, vocab_size=97))
    plain.save_pretrained(tmp_path / "hf")
    loaded = load_model(tmp_path / "hf")
    assert torch.equal(loaded.transformer.wte.weight, plain.transformer.wte.weight)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n_layer": "12"}, "n_layer must be a positive integer"),
        ({"n_head": 0}, "n_head must be a positive integer"),
        ({"n_embd": 30, "n_head": 4}, "not a multiple of n_head"),
        ({"attn_pdrop": 1.5}, "attn_pdrop must be a number from 0 to 1"),
        ({"activation_function": "gelu_newest"}, "activation_function must be"),
        ({"model_type": "llama"}, "this toolkit builds GPT-2"),
        ({"n_embd": 65536, "n_head": 1}, "parameters"),
    ],
)
def test_config_values_the_model_cannot_take(tmp_path, change, message):
    folder = write_config(tmp_path, {**DIALOGPT_CONFIG, **change})
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model(folder)
    assert str(folder / "config.json") in str(err.value)


def test_config_that_is_not_a_json_object(tmp_path):
    (tmp_path / "config.json").write_text('{"n_layer": 2,\n "n_embd": }')
    with pytest.raises(ModelLoadError, match=r"config.json:2: not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="holds a JSON list"):
        load_model(tmp_path)


# ----------------------------------------------------------------------------- checksums


def flip_bytes(path: Path, n: int = 16, at: float = 0.5) -> None:
    """Flip every bit of ``n`` bytes in the middle of ``path`` (in the tensor data)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_saved_weights_carry_sha256sum_files(reference, tmp_path):
    import shutil
    import subprocess

    model, _ = reference
    pkl = lsp_model.loading.save_state_dict_file(
        checkpoint_state_dict(model), tmp_path / "GP2-pretrain-step-3.pkl"
    )
    hf = save_hf_folder(model, None, tmp_path / "hf_model")
    assert (
        (tmp_path / "GP2-pretrain-step-3.pkl.sha256")
        .read_text()
        .endswith("  GP2-pretrain-step-3.pkl\n")
    )
    assert (hf / "SHA256SUMS").read_text().endswith("  model.safetensors\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "GP2-pretrain-step-3.pkl",
        "GP2-pretrain-step-3.pkl.sha256",
        "hf_model",
    ]
    if shutil.which("sha256sum"):  # the files are what coreutils writes and checks
        for folder, record in ((tmp_path, pkl.name + ".sha256"), (hf, "SHA256SUMS")):
            subprocess.run(["sha256sum", "--quiet", "-c", record], cwd=folder, check=True)


def test_flipped_bytes_are_detected(reference, tmp_path, caplog):
    model, folder = reference
    pkl = lsp_model.loading.save_state_dict_file(checkpoint_state_dict(model), tmp_path / "w.pkl")
    hf = save_hf_folder(model, None, tmp_path / "hf_model")
    with caplog.at_level("WARNING"):
        load_model(folder, pkl)
        load_model(hf)
    assert not caplog.records  # verified: nothing to warn about
    flip_bytes(pkl)
    with pytest.raises(ModelLoadError, match="checksum mismatch") as err:
        load_model(folder, pkl)
    assert str(pkl) in str(err.value)
    flip_bytes(hf / "model.safetensors")
    with pytest.raises(ModelLoadError, match="checksum mismatch") as err:
        load_model(hf)
    assert str(hf / "model.safetensors") in str(err.value)


def test_missing_weights_file_listed_in_sha256sums(reference, tmp_path):
    model, _ = reference
    hf = save_hf_folder(model, None, tmp_path / "hf_model")
    (hf / "model.safetensors").rename(hf / "renamed.bin.bak")
    with pytest.raises(ModelLoadError):
        load_model(hf, allow_random_init=False)
    (hf / "SHA256SUMS").write_text(
        (hf / "SHA256SUMS").read_text() + "0" * 64 + "  pytorch_model.bin\n"
    )
    (hf / "renamed.bin.bak").rename(hf / "model.safetensors")
    with pytest.raises(
        ModelLoadError, match="pytorch_model.bin: listed in .*SHA256SUMS but missing"
    ):
        load_model(hf)


def test_weights_without_checksum_load_with_a_warning(reference, tmp_path, caplog):
    model, folder = reference
    pkl = tmp_path / "from_elsewhere.pkl"
    torch.save(checkpoint_state_dict(model), pkl)
    hf = save_hf_folder(model, None, tmp_path / "hf_model")
    (hf / "SHA256SUMS").unlink()
    with caplog.at_level("WARNING", logger="lsp_model.loading"):
        a = load_model(folder, pkl)
        b = load_model(hf)
    assert torch.equal(a.transformer.wte.weight, model.transformer.wte.weight)
    assert torch.equal(b.transformer.wte.weight, model.transformer.wte.weight)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{pkl} has no checksum" in warned and f"{hf} has no SHA256SUMS" in warned


def test_hub_cache_blob_names_are_checksums(reference, tmp_path, monkeypatch, caplog):
    import hashlib

    model, _ = reference
    snapshot = make_hub_cache(tmp_path / "hub", model)
    # lay the weights out as huggingface_hub does: a link to blobs/<sha256>
    weights = snapshot / "model.safetensors"
    blobs = snapshot.parents[1] / "blobs"
    blobs.mkdir()
    blob = blobs / hashlib.sha256(weights.read_bytes()).hexdigest()
    weights.rename(blob)
    weights.symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level("WARNING", logger="lsp_model.loading"):
        load_model("microsoft/DialoGPT-small")
    assert not caplog.records
    flip_bytes(blob)
    with pytest.raises(ModelLoadError, match="checksum mismatch with its Hugging Face cache blob"):
        load_model("microsoft/DialoGPT-small")


def test_save_state_dict_file_replaces_the_old_checksum(reference, tmp_path):
    model, folder = reference
    path = tmp_path / "w.pkl"
    lsp_model.loading.save_state_dict_file({"transformer.wte.weight": torch.zeros(2)}, path)
    first = (tmp_path / "w.pkl.sha256").read_text()
    lsp_model.loading.save_state_dict_file(checkpoint_state_dict(model), path)
    assert (tmp_path / "w.pkl.sha256").read_text() != first
    load_model(folder, path)  # verified against the new checksum


def test_config_folder_without_weights_can_be_refused(reference):
    _, folder = reference
    with pytest.raises(lsp_model.loading.NoWeightsError, match="no weights") as err:
        load_model(folder, allow_random_init=False)
    assert str(folder) in str(err.value)
