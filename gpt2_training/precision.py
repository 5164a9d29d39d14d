"""Mixed precision with torch AMP: what to autocast to and how to scale the loss.

* neither ``--fp16`` nor ``--bf16`` given (``auto_precision``): bfloat16 on GPUs that
  compute it natively (Ampere and newer) and on CPUs that do (AMX or AVX-512 BF16); float16 with a dynamic loss
  scale on older GPUs (the published setting); float32 on other CPUs.
* ``--bf16 true``: bfloat16 autocast on CUDA, or CPU autocast (bf16 needs no loss scale).
* ``--fp16 true`` on CUDA: float16 autocast with a dynamic loss scale (``GradScaler``), or
  a static one when ``--loss_scale > 0``, as apex's ``FP16_Optimizer`` offered.
* ``--fp16 true`` without CUDA: one warning, then float32 (CPUs have no fast fp16 path).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


class StaticLossScaler:
    """A fixed loss scale with GradScaler's interface: overflowing steps are skipped."""

    def __init__(self, scale: float):
        self.scale_value = float(scale)
        self._found_inf: torch.Tensor | None = None

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_value

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        # GradScaler's fused kernel: unscales and notes any inf/nan in one pass, without a
        # host sync per parameter tensor.
        device = grads[0].device
        self._found_inf = torch.zeros(1, device=device)
        inv_scale = torch.full((1,), 1.0 / self.scale_value, device=device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self._found_inf, inv_scale)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._found_inf is None or not self._found_inf.item():
            optimizer.step()

    def update(self) -> None:
        self._found_inf = None

    def get_scale(self) -> float:
        return self.scale_value

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale_value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale_value = float(state["scale"])


@dataclass
class Precision:
    dtype: torch.dtype | None  # autocast dtype; None = float32
    device_type: str
    scaler: Any  # torch.amp.GradScaler (possibly disabled) or StaticLossScaler
    name: str

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def cpu_has_native_bf16() -> bool:
    """True on CPUs that multiply bf16 matrices natively: AMX tiles (Intel Sapphire Rapids
    and newer) or AVX-512 BF16 dot products (Intel Cooper Lake, AMD Zen 4 and newer)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def auto_precision(device: torch.device) -> tuple[bool, bool]:
    """(fp16, bf16) when neither flag was given.

    On a CPU, bf16 only where it is native: there bf16 autocast made the whole training step
    1.25x (AMX, Intel Xeon) to 2x (AVX-512 BF16, AMD EPYC) faster than float32
    (bench/train_bench.py, 2 cores); elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return not bf16, bf16
    return False, device.type == "cpu" and cpu_has_native_bf16()


def setup_precision(
    fp16: bool | None, bf16: bool | None, loss_scale: float, device: torch.device
) -> Precision:
    """The precision of a run; None for both flags means ``auto_precision``. A flag given
    alone leaves the other off (``--fp16 false`` alone trains in float32, as it always did)."""
    if fp16 is None and bf16 is None:
        fp16, bf16 = auto_precision(device)
    fp16, bf16 = bool(fp16), bool(bf16)
    device_type = device.type
    disabled = torch.amp.GradScaler(device_type if device_type == "cuda" else "cpu", enabled=False)
    if bf16:
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            logger.warning("--bf16: this GPU has no bfloat16 support; training in float32")
            return Precision(None, device_type, disabled, "float32")
        return Precision(
            torch.bfloat16, device_type, disabled, f"bfloat16 autocast ({device_type})"
        )
    if fp16:
        if device_type != "cuda":
            logger.warning(
                "--fp16 true needs a CUDA GPU and none is in use: training in float32 "
                "(pass --fp16 false to silence this, or --bf16 true for CPU bfloat16 autocast)"
            )
            return Precision(None, device_type, disabled, "float32")
        if loss_scale > 0:
            return Precision(
                torch.float16,
                device_type,
                StaticLossScaler(loss_scale),
                f"float16 autocast, static loss scale {loss_scale:g}",
            )
        return Precision(
            torch.float16,
            device_type,
            torch.amp.GradScaler("cuda"),
            "float16 autocast, dynamic loss scale",
        )
    return Precision(None, device_type, disabled, "float32")
