import math

import pytest
import torch

from lsp_model.modeling import GPT2Config, GPT2LMHeadModel
from lsp_model.optim import (
    MAX_GRAD_NORM,
    build_optimizer,
    lr_at_step,
    param_groups,
    set_lr,
)

SCHED = dict(warmup_steps=16000, warmup_proportion=0.1, num_optim_steps=1000, n_embd=768)


def tiny_config() -> GPT2Config:
    return GPT2Config(
        vocab_size=50,
        n_positions=16,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(tiny_config())


def test_param_groups_split_by_name(model):
    decay, no_decay = param_groups(model)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "transformer.h.0.ln_1.weight" in no_decay_names
    assert "transformer.ln_f.weight" in no_decay_names
    assert "transformer.h.1.attn.c_attn.bias" in no_decay_names
    assert "transformer.h.0.mlp.c_fc.weight" in decay_names
    assert "transformer.wte.weight" in decay_names
    assert all("bias" not in n and "ln" not in n for n in decay_names)
    # every parameter exactly once; the tied lm_head is not a second copy
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))
    assert decay_names.isdisjoint(no_decay_names)
    assert param_groups(model, weight_decay=0.1)[0]["weight_decay"] == 0.1


def test_frozen_parameters_are_left_out_and_the_rest_kept():
    m = GPT2LMHeadModel(tiny_config())
    # freeze one early parameter of each kind: every later parameter must still be grouped
    m.transformer.wpe.weight.requires_grad_(False)
    m.transformer.h[0].ln_1.bias.requires_grad_(False)
    decay, no_decay = param_groups(m)
    grouped = {id(p) for p in decay["params"] + no_decay["params"]}
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert grouped == trainable
    assert len(trainable) == len(list(m.parameters())) - 2
    assert id(m.transformer.ln_f.weight) in {id(p) for p in no_decay["params"]}


def test_build_optimizer_rejects_a_fully_frozen_model():
    m = GPT2LMHeadModel(tiny_config()).requires_grad_(False)
    with pytest.raises(ValueError, match="^the model has no trainable parameters$"):
        build_optimizer(m, lr=1e-5)


def test_build_optimizer(model):
    opt = build_optimizer(model, lr=1e-5)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-6 and g["lr"] == 1e-5
    assert g["fused"]  # the fused kernel runs on CPU parameters too
    set_lr(opt, 3e-4)
    assert all(g["lr"] == 3e-4 for g in opt.param_groups)
    assert MAX_GRAD_NORM == 1.0
    # a non-default decay reaches the decayed group (the no-decay group stays at 0)
    opt = build_optimizer(model, lr=1e-5, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


class _FakeParam:
    """Stands in for a parameter on a given kind of device (no GPU needed)."""

    requires_grad = True

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)


class _FakeModel(torch.nn.Module):
    def __init__(self, *devices: str) -> None:
        super().__init__()
        self._fake = [(f"w{i}", _FakeParam(d)) for i, d in enumerate(devices)]

    def named_parameters(self, *args, **kwargs):
        return iter(self._fake)


@pytest.mark.parametrize(
    "devices, fused",
    [
        (("cuda", "cuda"), True),
        (("cpu", "cpu"), True),
        (("cuda", "cpu"), None),
        (("meta", "meta"), None),
    ],
)
def test_fused_adamw_requested_when_all_parameters_are_on_one_cpu_or_cuda(
    monkeypatch, devices, fused
):
    # The fused kernel needs every tensor on one kind of device it supports; otherwise
    # fused=None leaves the choice to torch.
    seen = {}

    def spy(groups, **kwargs):
        seen.update(kwargs)
        return "optimizer"

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    assert build_optimizer(_FakeModel(*devices), lr=1e-5) == "optimizer"
    assert "fused" in seen and seen["fused"] is fused


def test_noam():
    lr, d, w = 1e-5, 768, 16000
    for s in (0, 1, 999, 15999, 16000, 50000):
        expected = lr * 1e4 * d**-0.5 * min((s + 1) ** -0.5, (s + 1) * w**-1.5)
        assert lr_at_step("noam", s, lr, **SCHED) == pytest.approx(expected, rel=1e-12)
    # peak at the end of warmup
    peak = lr_at_step("noam", w - 1, lr, **SCHED)
    assert peak > lr_at_step("noam", w - 100, lr, **SCHED)
    assert peak > lr_at_step("noam", w + 100, lr, **SCHED)


def test_noam_hand_values():
    # d = 16 so d**-0.5 = 0.25; lr * 1e4 * 0.25 = 2.5 with lr = 1e-3
    kw = dict(SCHED, n_embd=16, warmup_steps=4)  # warmup**-1.5 = 1/8
    assert lr_at_step("noam", 0, 1e-3, **kw) == pytest.approx(2.5 * 1 / 8)  # s=1: min(1, 1/8)
    assert lr_at_step("noam", 3, 1e-3, **kw) == pytest.approx(2.5 * 0.5)  # s=4: min(1/2, 4/8)
    assert lr_at_step("noam", 15, 1e-3, **kw) == pytest.approx(2.5 * 0.25)  # s=16: min(1/4, 2)
    # warmup_steps = 1 is the smallest legal warmup: the inverse square root from step 0
    one = dict(kw, warmup_steps=1)
    assert lr_at_step("noam", 0, 1e-3, **one) == pytest.approx(2.5)
    assert lr_at_step("noam", 3, 1e-3, **one) == pytest.approx(2.5 * 0.5)


def test_noamwd():
    lr = 1e-5
    for s in (0, 498, 499, 500, 1498, 1499, 10_000):
        noam = lr_at_step("noam", s, lr, **SCHED)
        factor = 0.5 ** (max(s + 1 - 500 + 1000, 0) // 1000)
        assert lr_at_step("noamwd", s, lr, **SCHED) == pytest.approx(noam * factor, rel=1e-12)
    # the halvings happen at s+1 = 500, 1500, ...
    assert lr_at_step("noamwd", 0, lr, **SCHED) == lr_at_step("noam", 0, lr, **SCHED)
    ratio = lr_at_step("noamwd", 499, lr, **SCHED) / lr_at_step("noam", 499, lr, **SCHED)
    assert ratio == 0.5


def test_bert():
    lr = 2.0
    kw = dict(SCHED, num_optim_steps=1000, warmup_proportion=0.1)
    assert lr_at_step("BERT", 0, lr, **kw) == 0.0
    assert lr_at_step("BERT", 50, lr, **kw) == pytest.approx(lr * 0.05 / 0.1)
    assert lr_at_step("BERT", 100, lr, **kw) == pytest.approx(lr)
    assert lr_at_step("BERT", 550, lr, **kw) == pytest.approx(lr * 0.45 / 0.9)
    assert lr_at_step("BERT", 999, lr, **kw) == pytest.approx(lr * 0.001 / 0.9)
    assert lr_at_step("BERT", 2000, lr, **kw) == 0.0  # never negative past the end
    # the peak sits exactly at the warmup boundary, from either side of the formula
    assert lr_at_step("BERT", 99, lr, **kw) == pytest.approx(lr * 0.099 / 0.1)
    assert lr_at_step("BERT", 101, lr, **kw) == pytest.approx(lr * 0.899 / 0.9)


def test_bert_with_warmup_over_the_whole_run():
    # warmup_proportion = 1: a linear ramp that ends at the last step; past it the rate is 0
    kw = dict(SCHED, num_optim_steps=100, warmup_proportion=1.0)
    assert lr_at_step("BERT", 0, 2.0, **kw) == 0.0
    assert lr_at_step("BERT", 50, 2.0, **kw) == pytest.approx(1.0)
    assert lr_at_step("BERT", 99, 2.0, **kw) == pytest.approx(1.98)
    assert lr_at_step("BERT", 100, 2.0, **kw) == 0.0
    assert lr_at_step("BERT", 150, 2.0, **kw) == 0.0


def test_bert_with_a_single_step():
    kw = dict(SCHED, num_optim_steps=1, warmup_proportion=0.1)
    assert lr_at_step("BERT", 0, 2.0, **kw) == 0.0  # x = 0: start of the warmup


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_optim_steps=0), r"BERT schedule needs num_optim_steps at least 1, got 0$"),
        (dict(num_optim_steps=-5), r"BERT schedule needs num_optim_steps at least 1, got -5$"),
        (dict(warmup_proportion=0.0), r"needs warmup_proportion in \(0, 1\], got 0.0$"),
        (dict(warmup_proportion=1.5), r"needs warmup_proportion in \(0, 1\], got 1.5$"),
        (dict(warmup_proportion=-0.1), r"needs warmup_proportion in \(0, 1\], got -0.1$"),
    ],
)
def test_bert_rejects_bad_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        lr_at_step("BERT", 0, 1e-3, **dict(SCHED, **overrides))


def test_constant_and_unknown():
    assert lr_at_step("None", 123, 1e-3, **SCHED) == 1e-3
    assert lr_at_step(None, 0, 1e-3, **SCHED) == 1e-3
    with pytest.raises(ValueError, match="noam, noamwd, BERT, None"):
        lr_at_step("cosine", 0, 1e-3, **SCHED)
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_at_step("noam", 0, 1e-3, **dict(SCHED, warmup_steps=0))
    assert math.isfinite(lr_at_step("noam", 0, 1e-3, **SCHED))
    for schedule in ("noam", "noamwd", "BERT", "None"):
        with pytest.raises(ValueError, match="step must be >= 0, got -1"):
            lr_at_step(schedule, -1, 1e-3, **SCHED)


def test_training_steps_reduce_loss():
    """The pieces the trainer combines: model loss, groups, AdamW, schedule, clipping."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config()).train()
    input_ids = torch.randint(0, 50, (4, 12))
    labels = input_ids.roll(-1, dims=1)
    labels[:, :5] = -1
    labels[:, -1] = -1
    opt = build_optimizer(model, lr=1e-5)
    losses = []
    for step in range(30):
        lr = lr_at_step("noam", step, 1e-5, **dict(SCHED, warmup_steps=5, n_embd=16))
        set_lr(opt, lr)
        loss, ppl = model(input_ids, None, None, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        assert math.isfinite(ppl.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("schedule", ["noam", "noamwd"])
@pytest.mark.parametrize("warmup_steps", [0, -3])
def test_noam_schedules_name_the_bad_warmup(schedule: str, warmup_steps: int) -> None:
    from lsp_model.optim import ScheduleError

    with pytest.raises(ScheduleError) as caught:
        lr_at_step(
            schedule,
            0,
            1e-3,
            warmup_steps=warmup_steps,
            warmup_proportion=0.1,
            num_optim_steps=10,
            n_embd=16,
        )
    err = caught.value
    assert str(err) == f"the {schedule} schedule needs warmup_steps at least 1, got {warmup_steps}"
    assert (err.schedule, err.param, err.requirement, err.value) == (
        schedule,
        "warmup_steps",
        "at least 1",
        warmup_steps,
    )
    # noam's own check, reached directly (noamwd checks first when called through it)
    from lsp_model.optim import ScheduleParams, noam

    with pytest.raises(
        ScheduleError,
        match=rf"^the noam schedule needs warmup_steps at least 1, got {warmup_steps}$",
    ):
        noam(0, 1e-3, ScheduleParams(warmup_steps, 0.1, 10, 16))
