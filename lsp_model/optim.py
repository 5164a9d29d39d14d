"""Optimizer, parameter groups and learning-rate schedules of DialoGPT (docs/REFERENCE.md §6)."""

from __future__ import annotations

import torch

__all__ = [
    "MAX_GRAD_NORM",
    "NO_DECAY_SUBSTRINGS",
    "SCHEDULES",
    "build_optimizer",
    "lr_at_step",
    "param_groups",
    "set_lr",
]

MAX_GRAD_NORM = 1.0
# The original matched these substrings anywhere in the parameter name ("ln" catches
# ln_1, ln_2, ln_f); kept verbatim so that the same parameters are decayed.
NO_DECAY_SUBSTRINGS = ("bias", "ln")
SCHEDULES = ("noam", "noamwd", "BERT", "None")

# noamwd's step decay, as in the original: halve every 1000 steps, counted from step 500.
_NOAMWD_RATE = 0.5
_NOAMWD_DECAY_STEPS = 1000
_NOAMWD_START_STEP = 500


def param_groups(model: torch.nn.Module, weight_decay: float = 0.01) -> list[dict]:
    """Two groups: [decayed params, params whose name contains 'bias' or 'ln' (no decay)].

    Both groups are always present (possibly empty) so their indices are stable. Tied
    parameters appear once (``named_parameters`` de-duplicates them); frozen ones are left
    out since the optimizer would never update them.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(s in name for s in NO_DECAY_SUBSTRINGS):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float = 0.01
) -> torch.optim.Optimizer:
    """AdamW over ``param_groups`` (betas 0.9/0.999, eps 1e-6 as the original's Adam)."""
    groups = param_groups(model, weight_decay)
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # The fused CUDA kernel is the fastest path but requires every tensor on CUDA; elsewhere
    # torch picks its foreach implementation by default.
    fused = all(p.is_cuda for p in params) or None
    return torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay, fused=fused
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _noam(step: int, base_lr: float, warmup_steps: int, n_embd: int) -> float:
    if warmup_steps <= 0:
        raise ValueError(f"noam schedules need warmup_steps > 0, got {warmup_steps}")
    s = step + 1
    return base_lr * 1e4 * n_embd**-0.5 * min(s**-0.5, s * warmup_steps**-1.5)


def lr_at_step(
    schedule: str | None,
    step: int,
    base_lr: float,
    *,
    warmup_steps: int,
    warmup_proportion: float,
    num_optim_steps: int,
    n_embd: int,
) -> float:
    """Learning rate for 0-based optimizer step ``step`` (docs/REFERENCE.md §6).

    noam:   ``lr * 1e4 * d**-0.5 * min((s+1)**-0.5, (s+1) * warmup_steps**-1.5)``
    noamwd: noam times ``0.5 ** (max(s+1 - 500 + 1000, 0) // 1000)``
    BERT:   ``lr * f(s / num_optim_steps)``, ``f(x) = x / wp`` for ``x < wp`` else
            ``(1 - x) / (1 - wp)``; clamped at 0 so that steps past ``num_optim_steps``
            never get a negative rate (within the run this changes nothing).
    None:   ``lr`` (the string "None" or Python None).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if schedule is None or schedule == "None":
        return base_lr
    if schedule == "noam":
        return _noam(step, base_lr, warmup_steps, n_embd)
    if schedule == "noamwd":
        s = step + 1
        exponent = max(s - _NOAMWD_START_STEP + _NOAMWD_DECAY_STEPS, 0) // _NOAMWD_DECAY_STEPS
        return _noam(step, base_lr, warmup_steps, n_embd) * _NOAMWD_RATE**exponent
    if schedule == "BERT":
        if num_optim_steps <= 0:
            raise ValueError(f"BERT schedule needs num_optim_steps > 0, got {num_optim_steps}")
        if not 0.0 < warmup_proportion <= 1.0:
            raise ValueError(
                f"BERT schedule needs 0 < warmup_proportion <= 1, got {warmup_proportion}"
            )
        x = step / num_optim_steps
        if x < warmup_proportion:
            factor = x / warmup_proportion
        elif warmup_proportion == 1.0:
            factor = 0.0
        else:
            factor = (1.0 - x) / (1.0 - warmup_proportion)
        return base_lr * max(factor, 0.0)
    raise ValueError(
        f"unknown lr schedule {schedule!r}; choose one of {', '.join(SCHEDULES)} (or None)"
    )
