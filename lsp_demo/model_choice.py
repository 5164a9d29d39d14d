"""Step 1: which model the demo trains, and why (docs/REFERENCE.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsp_demo import REPO
from lsp_demo.console import DemoError, say, shown

TINY_CONFIG = REPO / "configs" / "tiny"
HUB_NAMES = {
    "small": "microsoft/DialoGPT-small",
    "medium": "microsoft/DialoGPT-medium",
    "large": "microsoft/DialoGPT-large",
}
# --model auto asks the hub whether DialoGPT-small is there; without an answer this fast the
# demo goes on offline rather than keep a user waiting on a dead network.
HUB_PROBE_TIMEOUT = 5.0


@dataclass
class ModelChoice:
    kind: str  # tiny | small | medium | large
    name_or_path: str  # for LSP_train.py --model_name_or_path
    why: str
    pretrained: bool


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file()
        for name in (
            "model.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
        )
    )


def _local_copy(kind: str, model_dir: Path) -> Path | None:
    # `hf download microsoft/DialoGPT-small --local-dir models/DialoGPT-small` puts it here.
    for folder in (model_dir / f"DialoGPT-{kind}", model_dir / HUB_NAMES[kind]):
        if _has_weights(folder):
            return folder
    return None


def _cached_copy(hub_name: str) -> Path | None:
    """The Hugging Face cache's snapshot of ``hub_name`` with weights, without any network."""
    try:
        from lsp_model.hub import cached_snapshot

        folder = cached_snapshot(hub_name)
    except Exception:  # not cached, or an incomplete snapshot: both mean "no copy here"
        return None
    return folder if _has_weights(folder) else None


def choose_model(model: str, model_dir: Path) -> ModelChoice:
    """Resolve ``--model`` to a model folder or hub name, downloading it when needed."""
    tiny = ModelChoice("tiny", shown(TINY_CONFIG), "", pretrained=False)
    if model == "tiny":
        tiny.why = "asked for with --model tiny"
        return tiny
    if model == "auto":
        local = _local_copy("small", model_dir)
        if local is not None:
            return ModelChoice(
                "small",
                shown(local),
                f"--model auto found a local copy in {shown(local)}",
                pretrained=True,
            )
        name = HUB_NAMES["small"]
        if _cached_copy(name) is not None:
            return ModelChoice(
                "small", name, "--model auto found it in the Hugging Face cache", pretrained=True
            )
        from lsp_model.errors import ModelLoadError
        from lsp_model.hub import hub_reachable, resolve_model_source

        reachable, reason = hub_reachable(name, timeout=HUB_PROBE_TIMEOUT)
        if reachable:
            say(
                f"--model auto: the Hugging Face Hub is reachable; downloading {name} once "
                "(about 350 MB; --model tiny or HF_HUB_OFFLINE=1 skips it) ..."
            )
            try:
                resolve_model_source(name)
                return ModelChoice(
                    "small",
                    name,
                    "--model auto downloaded it from the Hugging Face Hub",
                    pretrained=True,
                )
            except ModelLoadError as err:
                reason = str(err)
        # The default demo must also run without a network: fall back, and say why.
        tiny.why = (
            f"--model auto found no DialoGPT-small in {shown(model_dir)}/DialoGPT-small "
            f"or in the Hugging Face cache, and {reason}; so the offline default is "
            "used (random init). To fine-tune DialoGPT-small offline, copy it there "
            f"first: hf download {name} --local-dir {shown(model_dir)}/DialoGPT-small"
        )
        return tiny
    local = _local_copy(model, model_dir)
    if local is not None:
        return ModelChoice(model, shown(local), f"local copy in {shown(local)}", pretrained=True)
    from lsp_model.errors import ModelLoadError
    from lsp_model.hub import resolve_model_source

    name = HUB_NAMES[model]
    say(f"looking for {name} in the Hugging Face cache, then on the hub ...")
    try:
        resolve_model_source(name)
    except ModelLoadError as err:
        raise DemoError(f"--model {model}: {err}", status=2) from None
    return ModelChoice(model, name, "from the Hugging Face hub / cache", pretrained=True)
