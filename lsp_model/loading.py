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

import json
import os
import pickle
import struct
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_safetensors

from lsp_common.atomic import atomic_folder
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

__all__ = [
    "HUB_FILE_PATTERNS",
    "ModelLoadError",
    "checkpoint_state_dict",
    "load_model",
    "load_state_dict_file",
    "normalize_state_dict",
    "resolve_model_source",
    "save_hf_folder",
]


class ModelLoadError(RuntimeError):
    """A model or checkpoint could not be found, read safely, or matched to the config."""


_CONFIG_AND_TOKENIZER = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
]
_SAFETENSORS_WEIGHTS = ["*.safetensors", "model.safetensors.index.json"]
_PICKLE_WEIGHTS = ["pytorch_model.bin", "pytorch_model.bin.index.json"]
# Only what this toolkit reads: hub repos of DialoGPT also carry TF/Flax weights.
HUB_TIMEOUT = 10.0  # seconds for one hub API request before the hub counts as unreachable
HUB_FILE_PATTERNS = _CONFIG_AND_TOKENIZER + _SAFETENSORS_WEIGHTS + _PICKLE_WEIGHTS

_NONE_STRINGS = {"", "none", "null"}
# Buffers that older GPT-2 checkpoints carry (causal mask, masked fill value); the current
# transformers GPT-2 builds its masks on the fly and has no such entries.
_OBSOLETE_BUFFERS = {
    ("attn", "bias"),
    ("attn", "masked_bias"),
    ("crossattention", "bias"),
    ("crossattention", "masked_bias"),
}
_TRANSFORMER_PREFIXES = ("h.", "wte.", "wpe.", "ln_f.")


# ----------------------------------------------------------------------------- sources


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; reading the environment here
    # as well honours a variable set later in the process (tests, notebooks).
    from huggingface_hub import constants

    return (
        constants.HF_HUB_OFFLINE or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder, from the environment as it is now."""
    # Same precedence as huggingface_hub.constants, but evaluated now rather than at import.
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expandvars(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expandvars(os.path.expanduser(os.environ["HF_HOME"])), "hub")
    return constants.HF_HUB_CACHE


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or os.sep in name.replace("/", "")
        or name.endswith((".json", ".pkl", ".pt", ".bin", ".safetensors"))
    )


def _first_line(err: BaseException | None) -> str:
    """The first non-blank line of ``err``'s message, else its type name.

    huggingface_hub wraps a network error in a paragraph; its first line says it all.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _unreachable_message(name: str, cache_dir: str, offline: bool, cause: Exception | None) -> str:
    if offline:
        why = "HF_HUB_OFFLINE is set"
    else:
        why = f"the Hugging Face Hub is unreachable ({_first_line(cause).removeprefix('Got: ')})"
    return (
        f"cannot load model '{name}': it is not a local folder, {why}, and no cached copy was "
        f"found in {cache_dir}. Download it where the hub is reachable, e.g. "
        f"`hf download {name} --local-dir models/{name.split('/')[-1]}`, copy that folder here "
        f"and pass it as --model_name_or_path models/{name.split('/')[-1]} (or fill the cache "
        f"under HF_HOME / HF_HUB_CACHE)."
    )


def _patterns_for(names: Collection[str] | None) -> list[str]:
    """Files to fetch from a repo holding ``names``: pytorch_model.bin only without safetensors.

    DialoGPT repos hold the same weights twice; the pickle copy is neither needed nor
    wanted. ``None`` (listing unknown) means every pattern.
    """
    if names is not None and any(n.endswith(".safetensors") for n in names):
        return _CONFIG_AND_TOKENIZER + _SAFETENSORS_WEIGHTS
    return HUB_FILE_PATTERNS


def _repo_files_online(repo_id: str) -> list[str] | None:
    from huggingface_hub import HfApi

    # model_info: one request, and no retry loop (list_repo_tree backs off for ~20 s when
    # the hub is down). A failure here is reported by the download that follows.
    try:
        siblings = HfApi().model_info(repo_id, timeout=HUB_TIMEOUT).siblings
    except Exception:  # noqa: BLE001
        return None
    return None if siblings is None else [s.rfilename for s in siblings]


def _repo_files_cached(repo_id: str, cache_dir: str) -> list[str] | None:
    from huggingface_hub import get_cached_repo_tree

    try:  # the listing huggingface_hub saved when it downloaded the snapshot
        return [entry.path for entry in get_cached_repo_tree(repo_id, cache_dir=cache_dir)]
    except Exception:  # noqa: BLE001 - no listing (older cache, hand-filled folder)
        return None


def cached_snapshot(repo_id: str) -> Path:
    """The Hugging Face cache's complete snapshot of ``repo_id``, without any network.

    Raises what ``snapshot_download(local_files_only=True)`` raises when there is none.
    A snapshot downloaded without pytorch_model.bin (safetensors present) is complete.
    """
    from huggingface_hub import snapshot_download

    cache_dir = hub_cache_dir()
    patterns = _patterns_for(_repo_files_cached(repo_id, cache_dir))
    return Path(
        snapshot_download(
            repo_id, allow_patterns=patterns, cache_dir=cache_dir, local_files_only=True
        )
    )


def hub_reachable(repo_id: str, timeout: float = HUB_TIMEOUT) -> tuple[bool, str]:
    """Whether the Hugging Face Hub answers for ``repo_id`` within ``timeout`` seconds.

    Returns ``(True, "")`` or ``(False, reason)``; never raises. ``HF_HUB_OFFLINE`` means
    no request at all.
    """
    if _hub_offline():
        return False, "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        HfApi().model_info(repo_id, timeout=timeout)
    except (RepositoryNotFoundError, GatedRepoError) as err:
        return False, f"the hub has no accessible repository {repo_id} ({type(err).__name__})"
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable now"
        return False, f"the Hugging Face Hub is unreachable ({_first_line(err)})"
    return True, ""


def resolve_model_source(model_name_or_path: str | os.PathLike | None) -> Path | None:
    """Local folder for ``model_name_or_path``: the folder itself, or the hub snapshot.

    Hub names are looked up in the Hugging Face cache first (``local_files_only``), then
    downloaded unless ``HF_HUB_OFFLINE`` is set. ``None`` (or "None") gives ``None``.
    """
    if model_name_or_path is None or str(model_name_or_path).strip().lower() in _NONE_STRINGS:
        return None
    name = str(model_name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(
            f"--model_name_or_path {name} is a file; pass the folder holding config.json "
            "(a state-dict file goes to --init_checkpoint)"
        )
    if _looks_like_path(name):
        raise ModelLoadError(f"model folder {name} does not exist")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    cache_dir = hub_cache_dir()
    offline = _hub_offline()
    try:
        return cached_snapshot(name)
    except HFValidationError as err:
        raise ModelLoadError(
            f"'{name}' is neither an existing folder nor a valid hub name ({err})"
        ) from err
    except Exception as err:  # not cached (or incomplete): try the network below
        cache_error: Exception = err
    if offline:
        raise ModelLoadError(_unreachable_message(name, cache_dir, True, cache_error))
    try:
        patterns = _patterns_for(_repo_files_online(name))
        return Path(snapshot_download(name, allow_patterns=patterns, cache_dir=cache_dir))
    except Exception as err:
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        if isinstance(err, RepositoryNotFoundError | GatedRepoError):
            raise ModelLoadError(
                f"cannot load model '{name}': the hub has no accessible repository of that "
                f"name ({type(err).__name__}); check the spelling or pass a local folder"
            ) from err
        raise ModelLoadError(_unreachable_message(name, cache_dir, False, err)) from err


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


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (``.safetensors``, or a torch pickle read weights-only) onto CPU."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} is not a file")
    if path.suffix == ".safetensors":
        try:
            return _check_tensor_dict(_load_safetensors(str(path), device="cpu"), path)
        except SafetensorError as err:
            raise ModelLoadError(f"{path} is not a valid safetensors file: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "global" in reason.lower() or "class" in reason.lower():
            # weights_only=True refuses any global outside torch's allow-list, which is
            # exactly what a code-executing pickle (via __reduce__) needs.
            raise ModelLoadError(
                f"refused to load {path} as unsafe: it is not a weights-only checkpoint and "
                f"reading it would import or call code named in the file ({reason}). If the "
                "file is trusted, re-save it as a plain state dict of tensors or as safetensors."
            ) from err
        # Corrupt files and exotic pickle opcodes land here: whatever the file is, it is not
        # something the weights-only reader accepts, so it is not run either.
        raise ModelLoadError(
            f"refused to load {path}: it is not a valid weights-only checkpoint ({reason}); "
            "treated as unsafe and not unpickled further (corrupt file, or not a torch state dict?)"
        ) from err
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        LookupError,
        TypeError,
        struct.error,
    ) as err:
        # The weights-only reader meets bytes that are no pickle at all (a text file, say)
        # with whatever its opcode handlers raise: KeyError for a missing memo entry, ...
        raise ModelLoadError(
            f"{path} is not a readable torch checkpoint: "
            f"{type(err).__name__}: {err or 'empty or truncated file'}"
        ) from err
    return _check_tensor_dict(obj, path)


def _unpickler_reason(err: Exception) -> str:
    # torch's message is long and ends by suggesting weights_only=False, which this toolkit
    # never does; keep only the line that says what was rejected.
    text = str(err)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    # Drop torch's advice to allow-list the global: that is how the exploit would run.
    return lines[0].split(" Please ")[0] if lines else type(err).__name__


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


def load_model(
    model_name_or_path: str | os.PathLike | None,
    init_checkpoint: str | os.PathLike | None = None,
    config: GPT2Config | None = None,
) -> GPT2LMHeadModel:
    """Build the model, float32 on CPU, in eval mode (call ``.train()`` to train).

    Config: ``config`` if given, else ``<model folder>/config.json``. Weights, in order:
    ``init_checkpoint`` (unless None/"None"), else HF weights in the model folder, else the
    config's random initialisation.
    """
    source = resolve_model_source(model_name_or_path)
    if config is None:
        if source is None:
            raise ModelLoadError("no model folder or config given: cannot build a model")
        config_file = source / "config.json"
        if not config_file.is_file():
            raise ModelLoadError(f"{source} has no config.json")
        try:
            config = GPT2Config.from_json_file(str(config_file))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{config_file} is not a valid GPT-2 config: {err}") from err

    model = GPT2LMHeadModel(config)
    if init_checkpoint is not None and str(init_checkpoint).strip().lower() not in _NONE_STRINGS:
        _load_into(model, load_state_dict_file(init_checkpoint), str(init_checkpoint))
    elif source is not None and (files := _hf_weight_files(source)):
        sd: dict[str, torch.Tensor] = {}
        for file in files:
            sd.update(load_state_dict_file(file))
        _load_into(model, sd, str(source))
    elif source is not None and not Path(str(model_name_or_path)).expanduser().is_dir():
        # A config-only local folder (configs/117M) means "train from scratch", but a hub
        # name means pretrained weights: silently starting from random ones would be wrong.
        raise ModelLoadError(
            f"the cached copy of '{model_name_or_path}' in {source} has no weights "
            "(model.safetensors or pytorch_model.bin); download it again or pass a folder "
            "that holds them"
        )

    model = model.float().cpu().eval()
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise ModelLoadError("internal error: lm_head and word embeddings are not tied")
    return model


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


def save_hf_folder(model: torch.nn.Module, tokenizer, folder: str | os.PathLike) -> Path:
    """Write a Hugging Face folder (config, safetensors, tokenizer) atomically.

    The result loads with ``AutoModelForCausalLM.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``. Files are written to a temporary sibling folder that
    replaces ``folder`` only when complete, so an interrupted save never looks finished.
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        _unwrap(model).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return folder
