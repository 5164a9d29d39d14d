"""Finding, reading and writing model checkpoints, always without executing pickled code.

Accepted sources (docs/REFERENCE.md §6):

* a local folder with ``config.json`` and optionally Hugging Face weights
  (``model.safetensors``, ``pytorch_model.bin``, or sharded with an index file);
* a hub name such as ``microsoft/DialoGPT-small``, looked up in the local Hugging Face
  cache first and downloaded only when the hub is reachable and ``HF_HUB_OFFLINE`` is off;
* an ``--init_checkpoint`` state dict: this toolkit's ``GP2-pretrain-step-N.pkl``, the
  original DialoGPT ``.pkl`` files (``module.`` prefixes, keys without ``transformer.``,
  ``lm_head.decoder.weight``), or any ``.pt``/``.bin``/``.safetensors`` GPT-2 state dict.

Pickle-based files are read with ``torch.load(weights_only=True)``: a file that needs
anything beyond tensors and plain containers is refused rather than executed (docs/REFERENCE.md §9).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import re
import struct
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_safetensors

from lsp_common.atomic import atomic_file, atomic_folder
from lsp_common.checksums import (
    SUMS_FILE,
    ChecksumError,
    file_sha256,
    sidecar_path,
    verify_file,
    verify_folder,
    write_sidecar,
    write_sums,
)
from lsp_common.cli import first_line
from lsp_model.errors import ModelLoadError, NoWeightsError
from lsp_model.hub import NONE_STRINGS, resolve_model_source
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

logger = logging.getLogger(__name__)

__all__ = [
    "ModelLoadError",
    "NoWeightsError",
    "checkpoint_state_dict",
    "has_weights",
    "load_model",
    "read_config",
    "load_state_dict_file",
    "normalize_state_dict",
    "save_hf_folder",
    "save_state_dict_file",
    "unpickling_refusal",
]


# Buffers that older GPT-2 checkpoints carry (causal mask, masked fill value); the current
# transformers GPT-2 builds its masks on the fly and has no such entries.
_OBSOLETE_BUFFERS = {
    ("attn", "bias"),
    ("attn", "masked_bias"),
    ("crossattention", "bias"),
    ("crossattention", "masked_bias"),
}
_TRANSFORMER_PREFIXES = ("h.", "wte.", "wpe.", "ln_f.")


# ----------------------------------------------------------------------------- config

# Keys that Hugging Face writes into saved GPT-2 configs besides GPT2Config's own fields:
# every transformers version since 2.x (model_type, n_ctx, task_specific_params, the
# generation defaults, torch_dtype, _name_or_path, ...), as in the published DialoGPT
# configs. Anything else is a typo or a config for another model, never silently ignored.
_LEGACY_CONFIG_KEYS = frozenset(
    {
        "model_type",
        "n_ctx",
        "task_specific_params",
        "torch_dtype",
        "_name_or_path",
        "name_or_path",
        "_commit_hash",
        "output_attentions",
        "attn_implementation",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "gradient_checkpointing",
        "use_bfloat16",
        "torchscript",
        "pruned_heads",
        "tie_encoder_decoder",
        "is_decoder",
        "cross_attention_hidden_size",
        "finetuning_task",
        "prefix",
        "tokenizer_class",
        "sep_token_id",
        "decoder_start_token_id",
        "num_labels",
        "tf_legacy_loss",
        "use_return_dict",
        "output_past",
        "xla_device",
        "_num_labels",
    }
)
# Shape-defining keys, checked here so that a wrong value is a message naming the file,
# not an exception from deep inside the model's constructor.
_POSITIVE_INT_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_ctx")
_PROBABILITY_KEYS = ("attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout")
_BOOL_KEYS = (
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "add_cross_attention",
    "use_cache",
)
# Far above DialoGPT-large (762M): a config beyond it is a typo in a size, not a model.
MAX_PARAMETERS = 20_000_000_000


def known_config_keys() -> frozenset[str]:
    """Keys a GPT-2 ``config.json`` may hold (GPT2Config's fields and aliases, the
    generation defaults older transformers saved in it, and other keys HF writes)."""
    from transformers import GenerationConfig

    return frozenset(
        {f.name for f in dataclasses.fields(GPT2Config)}
        | set(GPT2Config.attribute_map)
        | set(GenerationConfig._get_default_generation_params())
        | _LEGACY_CONFIG_KEYS
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _check_config_values(d: Mapping[str, Any], where: str) -> None:
    def bad(key: str, expected: str) -> ModelLoadError:
        return ModelLoadError(f"{where}: {key} must be {expected}, got {d[key]!r}")

    for key in _POSITIVE_INT_KEYS:
        if key in d and not (_is_int(d[key]) and d[key] >= 1):
            raise bad(key, "a positive integer")
    if d.get("n_inner") is not None and not (_is_int(d["n_inner"]) and d["n_inner"] >= 1):
        raise bad("n_inner", "a positive integer or null")
    for key in _PROBABILITY_KEYS:
        if key in d and not (_is_number(d[key]) and 0 <= d[key] <= 1):
            raise bad(key, "a number from 0 to 1")
    if "layer_norm_epsilon" in d and not (
        _is_number(d["layer_norm_epsilon"]) and d["layer_norm_epsilon"] > 0
    ):
        raise bad("layer_norm_epsilon", "a positive number")
    if "initializer_range" in d and not (
        _is_number(d["initializer_range"]) and d["initializer_range"] >= 0
    ):
        raise bad("initializer_range", "a number >= 0")
    for key in _BOOL_KEYS:
        if key in d and not isinstance(d[key], bool):
            raise bad(key, "true or false")
    if "activation_function" in d:
        from transformers.activations import ACT2FN

        if not isinstance(d["activation_function"], str) or d["activation_function"] not in ACT2FN:
            raise bad("activation_function", "one of transformers' activations (e.g. gelu_new)")
    if d.get("model_type", "gpt2") != "gpt2":
        raise ModelLoadError(
            f"{where}: model_type is {d['model_type']!r}; this toolkit builds GPT-2 (gpt2)"
        )


def read_config(config_file: str | os.PathLike) -> GPT2Config:
    """A GPT-2 config from ``config_file``; an unknown key (a typo such as ``n_layr``) or a
    value the model cannot be built with is a :class:`ModelLoadError` naming the file."""
    config_file = Path(config_file)
    try:
        d = json.loads(config_file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelLoadError(f"{config_file}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ModelLoadError(f"{config_file}: not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise ModelLoadError(
            f"{config_file}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})"
        ) from None
    except RecursionError:
        raise ModelLoadError(f"{config_file}: JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise ModelLoadError(
            f"{config_file}: holds a JSON {type(d).__name__}, not an object of settings"
        )
    unknown = sorted(set(d) - known_config_keys())
    if unknown:
        raise ModelLoadError(
            f"{config_file}: unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(repr(k) for k in unknown)
            + " (a typo? GPT-2's keys are n_layer, n_embd, n_head, n_positions, vocab_size, ...)"
        )
    _check_config_values(d, str(config_file))
    from huggingface_hub.errors import StrictDataclassError

    try:
        config = GPT2Config.from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError, StrictDataclassError) as err:
        # transformers validates each field's type: keep its first line, which names it
        raise ModelLoadError(
            f"{config_file}: not a valid GPT-2 config ({first_line(err)})"
        ) from None
    if config.n_embd % config.n_head:
        raise ModelLoadError(
            f"{config_file}: n_embd {config.n_embd} is not a multiple of n_head {config.n_head}"
        )
    n_params = (config.vocab_size + config.n_positions) * config.n_embd + config.n_layer * (
        12 * config.n_embd**2
    )
    if n_params > MAX_PARAMETERS:
        raise ModelLoadError(
            f"{config_file}: describes a model of about {n_params:.3g} parameters, more than "
            f"{MAX_PARAMETERS:.0e}; a size is wrong"
        )
    return config


# ----------------------------------------------------------------------------- reading


def _check_tensor_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        # Common wrappers ({"state_dict": ...}, {"model": ...}) around the actual weights.
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(f"{path} holds {type(obj).__name__}, not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(
            f"{path} is not a plain state dict: entries {bad[:5]!r} are not named tensors"
        )
    return dict(obj)


def _verify_sidecar(path: Path) -> None:
    try:
        verified = verify_file(path)
    except (ChecksumError, OSError) as err:
        raise ModelLoadError(str(err)) from None
    if not verified:
        logger.warning(
            "%s has no checksum (%s): loading it unverified, as a file from elsewhere",
            path,
            sidecar_path(path).name,
        )


def load_state_dict_file(path: str | os.PathLike, verify: bool = True) -> dict[str, torch.Tensor]:
    """Read a state dict (``.safetensors``, or a torch pickle read weights-only) onto CPU.

    With ``verify``, the file is first checked against its ``NAME.sha256`` sidecar, which
    this toolkit writes beside every weights file it saves: a mismatch is an error, a
    missing sidecar a warning.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} is not a file")
    if verify:
        _verify_sidecar(path)
    if path.suffix == ".safetensors":
        try:
            return _check_tensor_dict(_load_safetensors(str(path), device="cpu"), path)
        except SafetensorError as err:
            raise ModelLoadError(f"{path} is not a valid safetensors file: {err}") from err
        except (OSError, ValueError, RuntimeError) as err:  # e.g. a header that lies
            raise ModelLoadError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it may not read, and asks for a bug
            # report: noise next to the refusal below.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelLoadError(unpickling_refusal(path, err)) from err
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
        struct.error,
        MemoryError,
        OverflowError,
        RecursionError,
        AssertionError,
    ) as err:
        # The weights-only reader meets bytes that are no pickle at all (a text file, say)
        # with whatever its opcode handlers raise: KeyError for a missing memo entry, an
        # AssertionError for a storage key a damaged legacy file never defined, ...
        raise ModelLoadError(
            f"{path} is not a readable torch checkpoint: "
            f"{type(err).__name__}: {_unpickler_reason(err) if str(err) else 'empty or truncated file'}"
        ) from err
    return _check_tensor_dict(obj, path)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# torch's own paragraphs around the reason: the weights_only default, the advice to turn
# the protection off, a request for bug reports, a link. None of it is shown.
_TORCH_BOILERPLATE = ("weights only load failed", "weights_only", "please file", "check the doc")


def _unpickler_reason(err: BaseException) -> str:
    """The line of torch's refusal that says what was rejected, without its advice."""
    text = str(err).replace("WeightsUnpickler error:", "\n")
    for line in text.splitlines():
        line = line.strip()
        if line and not any(b in line.lower() for b in _TORCH_BOILERPLATE):
            return line.split(" Please ")[0]
    return type(err).__name__


def unpickling_refusal(path: str | os.PathLike, err: BaseException) -> str:
    """Why the weights-only reader refused ``path``, in plain words, for an error message.

    Never suggests reading the file with the protection off: a pickle that needs more than
    tensors and plain containers can run any code when unpickled in full.
    """
    reason = _unpickler_reason(err)
    named = _GLOBAL.search(reason)
    if named:
        return (
            f"refused to load {path}: it is not plain weights; unpickling it would import and "
            f"call {named.group(1)}, so it could run code. This toolkit reads weights only "
            "without running code; ask the file's source for safetensors or a plain state dict "
            "of tensors"
        )
    return (
        f"refused to load {path}: it is not a weights-only torch file ({reason}), and a pickle "
        "that is not could run code when read, so it is not read further (also the case for "
        "a damaged or truncated file)"
    )


def _is_obsolete_buffer(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 2 and (parts[-2], parts[-1]) in _OBSOLETE_BUFFERS


def normalize_state_dict(
    sd: Mapping[str, torch.Tensor], model_keys: Collection[str] | None = None
) -> dict[str, torch.Tensor]:
    """Rename keys of DDP / original-DialoGPT / HF checkpoints to this model's names.

    * ``module.`` (DistributedDataParallel) prefixes are stripped;
    * transformer keys without ``transformer.`` (``h.0...``, ``wte.weight``, ``ln_f.bias``)
      get it;
    * ``lm_head.decoder.weight`` (the original's tied head) becomes ``lm_head.weight``;
    * ``attn.bias`` / ``attn.masked_bias`` buffers are dropped unless ``model_keys``
      (the target model's state-dict keys) contains them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = key
        while new.startswith("module."):
            new = new[len("module.") :]
        if new.startswith(_TRANSFORMER_PREFIXES):
            new = "transformer." + new
        if new == "lm_head.decoder.weight":
            new = "lm_head.weight"
        if _is_obsolete_buffer(new) and (model_keys is None or new not in model_keys):
            continue
        if new in out:
            raise ModelLoadError(f"checkpoint keys {key!r} and another key both map to {new!r}")
        out[new] = value
    return out


# ----------------------------------------------------------------------------- model


def _hf_weight_files(folder: Path) -> list[Path]:
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise ModelLoadError(f"{folder / index} is not a valid shard index: {err}") from err
            return [folder / name for name in sorted(set(weight_map.values()))]
    return []


def _load_into(model: GPT2LMHeadModel, sd: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    sd = normalize_state_dict(sd, own.keys())
    wte = sd.get("transformer.wte.weight")
    head = sd.pop("lm_head.weight", None)
    if head is not None:
        if wte is None:
            # Only the head was stored: it *is* the embedding matrix.
            sd["transformer.wte.weight"] = head
        elif head.shape != wte.shape or not torch.equal(head, wte):
            raise ModelLoadError(
                f"{source}: lm_head.weight differs from transformer.wte.weight, but this model "
                "ties them (DialoGPT's LM head is the word embedding)"
            )
    for key, value in sd.items():
        if key in own and own[key].shape != value.shape:
            raise ModelLoadError(
                f"{source}: shape mismatch for {key}: checkpoint has {tuple(value.shape)}, "
                f"the model config expects {tuple(own[key].shape)} (wrong --model_name_or_path "
                "config for this checkpoint?)"
            )
    unexpected = sorted(set(sd) - set(own))
    missing = sorted(set(own) - set(sd) - {"lm_head.weight"})
    if unexpected or missing:
        raise ModelLoadError(
            f"{source} does not match the model: "
            + (f"{len(missing)} missing keys (e.g. {missing[:5]}) " if missing else "")
            + (f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})" if unexpected else "")
        )
    # load_state_dict copies (and casts fp16/bf16 to float32) into the existing, tied tensors.
    model.load_state_dict(sd, strict=False)


def has_weights(folder: str | os.PathLike) -> bool:
    """Whether a model folder holds Hugging Face weights (single file or sharded)."""
    return bool(_hf_weight_files(Path(folder)))


_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


def _verify_hf_files(folder: Path, files: list[Path]) -> None:
    """Check a model folder's weight files against its SHA256SUMS (written by
    :func:`save_hf_folder`), or, in the Hugging Face cache, against the names of the blobs
    they link to (the hub names LFS blobs by their SHA-256); else warn."""
    try:
        if verify_folder(folder, [f.name for f in files]):
            return
        unverified = []
        for file in files:
            blob = file.resolve()
            if file.is_symlink() and _BLOB_NAME.match(blob.name):
                if file_sha256(blob) != blob.name:
                    raise ChecksumError(
                        f"{file}: checksum mismatch with its Hugging Face cache blob {blob}: "
                        "the file is damaged (delete it from the cache and download it again)"
                    )
            else:
                unverified.append(file.name)
    except (ChecksumError, OSError) as err:
        raise ModelLoadError(str(err)) from None
    if unverified:
        logger.warning(
            "%s has no %s: loading %s unverified, as files from elsewhere",
            folder,
            SUMS_FILE,
            ", ".join(unverified),
        )


def load_model(
    model_name_or_path: str | os.PathLike | None,
    init_checkpoint: str | os.PathLike | None = None,
    config: GPT2Config | None = None,
    allow_random_init: bool = True,
) -> GPT2LMHeadModel:
    """Build the model, float32 on CPU, in eval mode (call ``.train()`` to train).

    Config: ``config`` if given, else ``<model folder>/config.json``. Weights, in order:
    ``init_checkpoint`` (unless None/"None"), else HF weights in the model folder, else the
    config's random initialisation: what training from scratch wants, and what
    ``allow_random_init=False`` (decoding) refuses. Weights files are checked against the
    checksums saved with them.
    """
    source = resolve_model_source(model_name_or_path)
    if config is None:
        if source is None:
            raise ModelLoadError("no model folder or config given: cannot build a model")
        config_file = source / "config.json"
        if not config_file.is_file():
            raise ModelLoadError(f"{source} has no config.json")
        config = read_config(config_file)

    if init_checkpoint is not None and str(init_checkpoint).strip().lower() not in NONE_STRINGS:
        sd = load_state_dict_file(init_checkpoint)
        model = _build(config, source)
        _load_into(model, sd, str(init_checkpoint))
    elif source is not None and (files := _hf_weight_files(source)):
        _verify_hf_files(source, files)
        sd = {}
        for file in files:
            sd.update(load_state_dict_file(file, verify=False))
        model = _build(config, source)
        _load_into(model, sd, str(source))
    elif source is not None and (source / SUMS_FILE).is_file():
        # The toolkit saved weights here (SHA256SUMS lists them) and they are gone: say so,
        # rather than fall back to the random initialisation.
        _verify_hf_files(source, [])
        raise ModelLoadError(f"{source}: {SUMS_FILE} lists no weights file this toolkit reads")
    elif source is not None and not Path(str(model_name_or_path)).expanduser().is_dir():
        # A config-only local folder (configs/117M) means "train from scratch", but a hub
        # name means pretrained weights: silently starting from random ones would be wrong.
        raise ModelLoadError(
            f"the cached copy of '{model_name_or_path}' in {source} has no weights "
            "(model.safetensors or pytorch_model.bin); download it again or pass a folder "
            "that holds them"
        )
    elif not allow_random_init:
        raise NoWeightsError(
            f"{source} has a config.json but no weights (model.safetensors, "
            "pytorch_model.bin or a sharded index), and no --init_checkpoint was given: "
            "the model would have random weights"
        )
    else:
        model = _build(config, source)

    model = model.float().cpu().eval()
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise ModelLoadError("internal error: lm_head and word embeddings are not tied")
    return model


def _build(config: GPT2Config, source: Path | None) -> GPT2LMHeadModel:
    where = f"{source / 'config.json'}" if source is not None else "the model config"
    try:
        return GPT2LMHeadModel(config)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as err:
        raise ModelLoadError(f"{where}: cannot build a GPT-2 model from it ({err})") from err


# ----------------------------------------------------------------------------- saving


def _unwrap(model: torch.nn.Module) -> Any:
    # DistributedDataParallel keeps the model in .module, torch.compile in ._orig_mod.
    while True:
        inner = getattr(model, "module", None)
        if inner is None:
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def checkpoint_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU state dict for ``GP2-pretrain-step-N.pkl``: unwrapped, plain HF GPT-2 key names.

    DDP / torch.compile wrappers are removed so keys carry no ``module.`` prefix, and the
    tied ``lm_head.weight`` stays the same CPU tensor as ``transformer.wte.weight`` so that
    ``torch.save`` stores the embedding once. The result loads strictly into plain
    ``transformers.GPT2LMHeadModel`` (``model.load_state_dict(sd)``) and into ``load_model``.
    """
    copies: dict[tuple[int, torch.dtype, torch.Size], torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in _unwrap(model).state_dict().items():
        memo = (value.data_ptr(), value.dtype, value.shape)
        if memo not in copies:
            copies[memo] = value.detach().to("cpu", copy=True)
        out[key] = copies[memo]
    return out


def torch_save_to(obj: Any, f: IO[bytes]) -> None:
    """``torch.save(obj, f)``, raising the write's own ``OSError`` (a full disk, a read-only
    file system) where torch's zip writer would replace it by a RuntimeError about file
    positions; the atomic writers then name the output."""
    try:
        torch.save(obj, f)
    except RuntimeError as err:
        if isinstance(err.__context__, OSError):
            raise err.__context__ from None
        raise


def save_state_dict_file(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """``torch.save`` a state dict atomically, with its ``NAME.sha256`` beside it.

    The old sidecar goes before the new file is renamed into place and the new one comes
    after, so a kill at any moment leaves a file with its own checksum or with none (loaded
    with a warning), never a file next to another file's checksum.
    """
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch_save_to(dict(sd), f)
        f.flush()
        os.fsync(f.fileno())
        digest = file_sha256(tmp)
        sidecar_path(path).unlink(missing_ok=True)
    write_sidecar(path, digest)
    return path


def save_hf_folder(model: torch.nn.Module, tokenizer, folder: str | os.PathLike) -> Path:
    """Write a Hugging Face folder (config, safetensors, tokenizer, SHA256SUMS) atomically.

    The result loads with ``AutoModelForCausalLM.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``. Files are written to a temporary sibling folder that
    replaces ``folder`` only when complete, so an interrupted save never looks finished.
    ``SHA256SUMS`` (``sha256sum`` format) covers the weight files, which loading checks.
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        _unwrap(model).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_sums(tmp, [p.name for p in _hf_weight_files(tmp)])
    return folder
