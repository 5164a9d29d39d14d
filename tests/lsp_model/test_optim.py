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


def test_build_optimizer(model):
    opt = build_optimizer(model, lr=1e-5)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-6 and g["lr"] == 1e-5
    assert not g["fused"]  # CPU parameters
    set_lr(opt, 3e-4)
    assert all(g["lr"] == 3e-4 for g in opt.param_groups)
    assert MAX_GRAD_NORM == 1.0


def test_noam():
    lr, d, w = 1e-5, 768, 16000
    for s in (0, 1, 999, 15999, 16000, 50000):
        expected = lr * 1e4 * d**-0.5 * min((s + 1) ** -0.5, (s + 1) * w**-1.5)
        assert lr_at_step("noam", s, lr, **SCHED) == pytest.approx(expected, rel=1e-12)
    # peak at the end of warmup
    peak = lr_at_step("noam", w - 1, lr, **SCHED)
    assert peak > lr_at_step("noam", w - 100, lr, **SCHED)
    assert peak > lr_at_step("noam", w + 100, lr, **SCHED)


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


def test_constant_and_unknown():
    assert lr_at_step("None", 123, 1e-3, **SCHED) == 1e-3
    assert lr_at_step(None, 0, 1e-3, **SCHED) == 1e-3
    with pytest.raises(ValueError, match="noam, noamwd, BERT, None"):
        lr_at_step("cosine", 0, 1e-3, **SCHED)
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_at_step("noam", 0, 1e-3, **dict(SCHED, warmup_steps=0))
    assert math.isfinite(lr_at_step("noam", 0, 1e-3, **SCHED))


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
