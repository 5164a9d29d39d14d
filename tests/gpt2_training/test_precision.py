"""gpt2_training.precision: the static loss scale, the CPU fallbacks, the automatic choice."""

from __future__ import annotations

import pytest
import torch

from gpt2_training.precision import StaticLossScaler, setup_precision


def _optimizer_with_grads(*grads: list[float]) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    params = [torch.nn.Parameter(torch.ones(len(g))) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    return torch.optim.SGD(params, lr=1.0), params


def test_static_scale_unscales_and_steps():
    scaler = StaticLossScaler(4.0)
    assert scaler.scale(torch.tensor(2.0)).item() == 8.0
    optimizer, params = _optimizer_with_grads([4.0, 8.0], [-4.0])
    scaler.unscale_(optimizer)
    assert params[0].grad.tolist() == [1.0, 2.0] and params[1].grad.tolist() == [-1.0]
    scaler.step(optimizer)
    scaler.update()
    assert params[0].tolist() == [0.0, -1.0] and params[1].tolist() == [2.0]


def test_static_scale_skips_a_step_with_inf_or_nan():
    for bad in (float("inf"), float("nan")):
        scaler = StaticLossScaler(2.0)
        optimizer, params = _optimizer_with_grads([2.0], [bad])
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        assert params[0].tolist() == [1.0] and params[1].tolist() == [1.0]  # untouched
    optimizer, params = _optimizer_with_grads([2.0])
    scaler.unscale_(optimizer)
    scaler.step(optimizer)  # the next, finite step goes through again
    assert params[0].tolist() == [0.0]


def test_static_scale_state_round_trip():
    scaler = StaticLossScaler(1024)
    other = StaticLossScaler(1)
    other.load_state_dict(scaler.state_dict())
    assert other.get_scale() == 1024.0


def test_cpu_precision_fallbacks():
    cpu = torch.device("cpu")
    assert setup_precision(True, False, 0, cpu).name == "float32"  # fp16 needs CUDA
    bf16 = setup_precision(False, True, 0, cpu)
    assert bf16.dtype == torch.bfloat16 and not bf16.scaler.is_enabled()


@pytest.mark.parametrize(
    ("amx", "avx512_bf16"), [(True, False), (False, True), (True, True), (False, False)]
)
def test_neither_flag_on_cpu_is_bf16_where_native_else_float32(monkeypatch, amx, avx512_bf16):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    cpu = torch.device("cpu")
    native = amx or avx512_bf16
    assert setup_precision(None, None, 0, cpu).dtype == (torch.bfloat16 if native else None)
    # a flag given alone turns the automatic choice off
    assert setup_precision(False, None, 0, cpu).dtype is None
    assert setup_precision(None, False, 0, cpu).dtype is None
    assert setup_precision(None, True, 0, cpu).dtype == torch.bfloat16


@pytest.mark.parametrize("bf16_gpu", [True, False])
def test_neither_flag_on_cuda_gives_bf16_or_the_published_fp16(monkeypatch, bf16_gpu):
    from gpt2_training import precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16_gpu)
    assert precision.auto_precision(torch.device("cuda", 0)) == (not bf16_gpu, bf16_gpu)
    chosen = precision.setup_precision(None, None, 0, torch.device("cuda", 0))
    assert chosen.dtype == (torch.bfloat16 if bf16_gpu else torch.float16)
