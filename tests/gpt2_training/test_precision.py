"""gpt2_training.precision: the static loss scale and the CPU fallbacks."""

from __future__ import annotations

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
