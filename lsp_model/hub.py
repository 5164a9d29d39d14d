"""Where a model comes from: a local folder, or a hub name resolved to a snapshot in the
Hugging Face cache (downloaded when the hub is reachable and ``HF_HUB_OFFLINE`` is off).

Only huggingface_hub is imported, and only when a hub name is looked up: no torch, so that a
command can report a model it cannot find without paying for torch, and a child process
that only resolves names starts at once. Loading the weights is ``lsp_model.loading``'s job.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from lsp_common.checksums import SUMS_FILE
from lsp_common.cli import first_line
from lsp_model.errors import ModelLoadError

__all__ = [
    "HUB_FILE_PATTERNS",
    "HUB_TIMEOUT",
    "NONE_STRINGS",
    "cached_snapshot",
    "hub_cache_dir",
    "hub_reachable",
    "resolve_model_source",
]

# What --model_name_or_path and --init_checkpoint take to mean "none" (any case).
NONE_STRINGS = {"", "none", "null"}

_CONFIG_AND_TOKENIZER = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    SUMS_FILE,  # a repo uploaded from a toolkit hf_model/ folder carries its checksums
]
_SAFETENSORS_WEIGHTS = ["*.safetensors", "model.safetensors.index.json"]
_PICKLE_WEIGHTS = ["pytorch_model.bin", "pytorch_model.bin.index.json"]
# Only what this toolkit reads: hub repos of DialoGPT also carry TF/Flax weights.
HUB_TIMEOUT = 10.0  # seconds for one hub API request before the hub counts as unreachable
HUB_FILE_PATTERNS = _CONFIG_AND_TOKENIZER + _SAFETENSORS_WEIGHTS + _PICKLE_WEIGHTS


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


def _unreachable_message(name: str, cache_dir: str, offline: bool, cause: Exception | None) -> str:
    if offline:
        why = "HF_HUB_OFFLINE is set"
    else:
        why = f"the Hugging Face Hub is unreachable ({first_line(cause).removeprefix('Got: ')})"
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
        return False, f"the Hugging Face Hub is unreachable ({first_line(err)})"
    return True, ""


def resolve_model_source(model_name_or_path: str | os.PathLike | None) -> Path | None:
    """Local folder for ``model_name_or_path``: the folder itself, or the hub snapshot.

    Hub names are looked up in the Hugging Face cache first (``local_files_only``), then
    downloaded unless ``HF_HUB_OFFLINE`` is set. ``None`` (or "None") gives ``None``.
    """
    if model_name_or_path is None or str(model_name_or_path).strip().lower() in NONE_STRINGS:
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
