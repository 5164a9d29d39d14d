import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

import lsp_model.modeling
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "config.json"


def small_config(**overrides) -> GPT2Config:
    kwargs = dict(
        vocab_size=97,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=96,
        eos_token_id=96,
    )
    kwargs.update(overrides)
    return GPT2Config(**kwargs)


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(small_config()).eval()


def make_batch(seed: int = 1, batch: int = 3, length: int = 10, vocab: int = 97):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (batch, length), generator=g)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    # context positions unlabelled, different label counts per row
    labels[0, :4] = -1
    labels[1, :7] = -1
    labels[2, :2] = -1
    labels[2, -1] = -1
    position_ids = torch.arange(length).expand(batch, length)
    return input_ids, position_ids, labels


def reference_loss_ppl(logits: torch.Tensor, labels: torch.Tensor):
    """The original DialoGPT computation, on the full projection."""
    ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=-1,
        reduction="none",
    ).view(labels.shape)
    label_size = (labels != -1).sum(dim=1).float()
    loss = ce.sum() / label_size.sum()
    ppl = torch.exp(torch.mean(ce.sum(dim=1) / label_size))
    return loss, ppl


def test_exports_and_architecture(model):
    assert lsp_model.modeling.GPT2Config is transformers.GPT2Config
    assert lsp_model.modeling.GPT2Tokenizer is transformers.GPT2Tokenizer
    assert issubclass(GPT2LMHeadModel, transformers.GPT2LMHeadModel)
    assert model.config._attn_implementation == "sdpa"
    assert model.lm_head.weight is model.transformer.wte.weight
    assert hasattr(GPT2Config, "from_json_file")


def test_tiny_config_builds():
    config = GPT2Config.from_json_file(TINY_CONFIG)
    m = GPT2LMHeadModel(config)
    assert m.config.n_layer == 2 and m.config.vocab_size == 50257
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()


def test_loss_and_ppl_match_original_formula(model):
    input_ids, position_ids, labels = make_batch()
    with torch.no_grad():
        loss, ppl = model(input_ids, position_ids, None, labels)
        logits = model(input_ids, position_ids)
    ref_loss, ref_ppl = reference_loss_ppl(logits, labels)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and ppl.dim() == 0
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ppl, ref_ppl, rtol=1e-6, atol=1e-6)
    # loss is the token mean, ppl the exp of the sequence mean: they differ here
    assert not math.isclose(math.exp(loss.item()), ppl.item(), rel_tol=1e-4)
    with torch.no_grad():
        loss32, ppl32 = model(input_ids.int(), position_ids, None, labels.int())
    torch.testing.assert_close((loss32, ppl32), (loss, ppl))


def test_keyword_call_and_no_shift(model):
    input_ids, position_ids, labels = make_batch(seed=2)
    loss, _ = model(input_ids, position_ids=position_ids, lm_labels=labels)
    with torch.no_grad():
        logits = model(input_ids, position_ids)
    # label at position t is scored against the logits at position t (no shift)
    t = 9
    manual = F.cross_entropy(logits[0, t : t + 1], labels[0, t : t + 1])
    only_one = torch.full_like(labels, -1)
    only_one[0, t] = labels[0, t]
    one_loss, one_ppl = model(input_ids, position_ids=position_ids, lm_labels=only_one)
    torch.testing.assert_close(one_loss, manual, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(one_ppl, torch.exp(manual), rtol=1e-6, atol=1e-6)
    assert loss.requires_grad


def test_gathered_projection_equals_full_projection_with_grads():
    torch.manual_seed(3)
    config = small_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    m = GPT2LMHeadModel(config)
    input_ids, position_ids, labels = make_batch(seed=4)

    loss, _ = m(input_ids, position_ids, None, labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()

    ref_loss, _ = reference_loss_ppl(m(input_ids, position_ids), labels)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    for n, p in m.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)


def test_label_less_rows_are_left_out_of_ppl(model):
    input_ids, position_ids, labels = make_batch(seed=5)
    empty_row = labels.clone()
    empty_row[1] = -1
    with torch.no_grad():
        loss, ppl = model(input_ids, position_ids, None, empty_row)
        ref_loss, ref_ppl = reference_loss_ppl(
            model(input_ids[[0, 2]], position_ids[[0, 2]]), empty_row[[0, 2]]
        )
    assert torch.isfinite(ppl)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ppl, ref_ppl, rtol=1e-6, atol=1e-6)


def test_batch_without_labels_gives_zero_loss_and_unit_ppl():
    torch.manual_seed(0)
    m = GPT2LMHeadModel(small_config())
    input_ids, position_ids, labels = make_batch(seed=6)
    loss, ppl = m(input_ids, position_ids, None, torch.full_like(labels, -1))
    assert loss.item() == 0.0 and ppl.item() == 1.0
    loss.backward()  # still part of the graph
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())


def test_weights(model):
    input_ids, position_ids, labels = make_batch(seed=7)
    g = torch.Generator().manual_seed(8)
    weights = torch.rand(labels.shape, generator=g)
    with torch.no_grad():
        loss, ppl = model(input_ids, position_ids, None, labels, weights)
        plain_loss, plain_ppl = model(input_ids, position_ids, None, labels)
        ones_loss, _ = model(input_ids, position_ids, None, labels, torch.ones_like(weights))
        logits = model(input_ids, position_ids)
    ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-1, reduction="none"
    ).view(labels.shape)
    mask = (labels != -1).float()
    expected = (weights * mask * ce).sum() / (weights * mask).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ppl, plain_ppl)  # ppl keeps the unweighted definition
    torch.testing.assert_close(ones_loss, plain_loss, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="weights shape"):
        model(input_ids, position_ids, None, labels, weights[:, :3])


def test_token_type_ids_only_used_when_given(model):
    input_ids, position_ids, labels = make_batch(seed=9)
    token_type_ids = torch.zeros_like(input_ids)
    with torch.no_grad():
        without = model(input_ids, position_ids)
        with_tt = model(input_ids, position_ids, token_type_ids)
        parent = transformers.GPT2LMHeadModel.forward(
            model, input_ids=input_ids, position_ids=position_ids
        ).logits
        parent_tt = transformers.GPT2LMHeadModel.forward(
            model, input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids
        ).logits
    torch.testing.assert_close(without, parent)
    torch.testing.assert_close(with_tt, parent_tt)
    # token type 0 still adds wte[0]: passing zeros is not the same as passing nothing
    assert not torch.allclose(without, with_tt)
    loss_none, _ = model(input_ids, position_ids, None, labels)
    loss_tt, _ = model(input_ids, position_ids, token_type_ids, labels)
    assert not torch.allclose(loss_none, loss_tt)


def test_logits_shape_and_hf_route(model):
    input_ids, _, _ = make_batch(seed=10)
    with torch.no_grad():
        logits = model(input_ids)
        out = model(input_ids, attention_mask=torch.ones_like(input_ids))
        out2 = model(input_ids=input_ids, return_dict=True)
    assert logits.shape == (3, 10, 97)
    assert isinstance(out, transformers.modeling_outputs.CausalLMOutputWithCrossAttentions)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out2.logits, logits)


def test_bad_label_inputs(model):
    input_ids, position_ids, labels = make_batch(seed=11)
    bad = labels.clone()
    bad[0, 5] = -100
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids, position_ids, None, bad)
    with pytest.raises(TypeError, match="lm_labels cannot be combined"):
        model(input_ids, lm_labels=labels, attention_mask=torch.ones_like(labels))
    with pytest.raises(ValueError, match="lm_labels shape"):
        model(input_ids, lm_labels=labels[:, :4])


def test_generate_matches_manual_greedy(model):
    prompt = torch.tensor([[5, 17, 3, 96]])
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=96,
        eos_token_id=None,
    )
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(out, seq)


def test_beam_generate_runs(model):
    prompt = torch.tensor([[5, 17, 3, 96], [1, 2, 3, 4]])
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=5,
        num_beams=3,
        do_sample=False,
        pad_token_id=96,
    )
    assert out.shape[0] == 2 and out.shape[1] <= 9


def test_autocast_keeps_loss_in_float32(model):
    input_ids, position_ids, labels = make_batch(seed=12)
    with torch.no_grad():
        ref_loss, ref_ppl = model(input_ids, position_ids, None, labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, ppl = model(input_ids, position_ids, None, labels)
    assert loss.dtype == torch.float32 and ppl.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=0)
    torch.testing.assert_close(ppl, ref_ppl, rtol=5e-2, atol=0)
