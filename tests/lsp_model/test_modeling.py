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


def test_fused_gelu_computes_what_transformers_gpt2_computes(model):
    # The MLP runs torch's fused tanh-GELU; a plain transformers GPT-2 with the same weights
    # (its seven-op "gelu_new") gives the same logits, and the saved config keeps its name.
    assert all(isinstance(b.mlp.act, torch.nn.GELU) for b in model.transformer.h)
    assert model.config.activation_function == "gelu_new"
    plain = transformers.GPT2LMHeadModel(small_config()).eval()
    plain.load_state_dict(model.state_dict())
    assert type(plain.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"
    input_ids, position_ids, _ = make_batch()
    with torch.no_grad():
        ours = model(input_ids, position_ids)
        theirs = plain(input_ids, position_ids=position_ids).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # other activations are left as configured
    relu = GPT2LMHeadModel(small_config(activation_function="relu"))
    assert not isinstance(relu.transformer.h[0].mlp.act, torch.nn.GELU)


def test_explicit_attention_kernel_is_kept():
    # SDPA is only the default: a config asking for "eager" (e.g. to read attention
    # weights) keeps it, and both kernels compute the same function
    torch.manual_seed(0)
    eager = GPT2LMHeadModel(small_config(attn_implementation="eager")).eval()
    assert eager.config._attn_implementation == "eager"
    torch.manual_seed(0)
    sdpa = GPT2LMHeadModel(small_config()).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    input_ids, position_ids, _ = make_batch(seed=13)
    with torch.no_grad():
        torch.testing.assert_close(eager(input_ids), sdpa(input_ids), rtol=1e-5, atol=1e-5)
        attentions = eager(input_ids, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (3, 4, 10, 10)


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


def test_position_ids_are_used(model):
    # e.g. a continuation whose positions do not start at 0: every route must apply them
    input_ids, _, labels = make_batch(seed=14)
    shifted = torch.arange(5, 15).expand(3, 10)
    with torch.no_grad():
        logits = model(input_ids, shifted)
        parent = transformers.GPT2LMHeadModel.forward(
            model, input_ids=input_ids, position_ids=shifted
        ).logits
        hf_route = model(input_ids, shifted, attention_mask=torch.ones_like(input_ids)).logits
        loss, ppl = model(input_ids, shifted, None, labels)
        default_loss, _ = model(input_ids, None, None, labels)
    torch.testing.assert_close(logits, parent)
    torch.testing.assert_close(hf_route, parent)
    assert not torch.allclose(logits, model(input_ids).detach())
    ref_loss, ref_ppl = reference_loss_ppl(parent, labels)
    torch.testing.assert_close((loss, ppl), (ref_loss, ref_ppl), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(loss, default_loss)


def test_forward_passes_build_no_kv_cache(model):
    # config.use_cache is True for generation; a training or scoring pass must not pay for
    # a cache it never uses
    caches = []
    handle = model.transformer.register_forward_hook(
        lambda module, args, output: caches.append(output.past_key_values)
    )
    try:
        input_ids, position_ids, labels = make_batch(seed=15)
        with torch.no_grad():
            model(input_ids, position_ids, None, labels)
            model(input_ids, position_ids)
    finally:
        handle.remove()
    assert caches == [None, None]


@pytest.mark.parametrize("rows_per_chunk", [None, 1, 3])
def test_gathered_projection_equals_full_projection_with_grads(monkeypatch, rows_per_chunk):
    # The projection and loss run a chunk of labelled rows at a time (many chunks here),
    # in float32 on the CPU each chunk's product a tile of vocabulary columns at a time.
    if rows_per_chunk is not None:
        monkeypatch.setitem(lsp_model.modeling.CHUNK_ELEMENTS, "cpu", 97 * rows_per_chunk)
        monkeypatch.setattr(lsp_model.modeling, "CPU_FLOAT32_TILE", (rows_per_chunk, 7))
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
    with pytest.raises(ValueError, match="^weights were given without lm_labels$"):
        model(input_ids, position_ids, None, None, weights)


def test_all_zero_weights_give_zero_loss(model):
    # nothing to learn from: the loss is 0 (not 0/0 = NaN) and the perplexity is unchanged
    input_ids, position_ids, labels = make_batch(seed=16)
    weights = torch.zeros(labels.shape)
    loss, ppl = model(input_ids, position_ids, None, labels, weights)
    _, plain_ppl = model(input_ids, position_ids, None, labels)
    assert loss.item() == 0.0
    torch.testing.assert_close(ppl, plain_ppl)


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


def test_hf_route_passes_every_input_on(model):
    input_ids, position_ids, _ = make_batch(seed=17)
    token_type_ids = torch.randint(
        0, 97, input_ids.shape, generator=torch.Generator().manual_seed(1)
    )
    ones = torch.ones_like(input_ids)
    with torch.no_grad():
        plain = model(input_ids, position_ids + 2, token_type_ids)
        out = model(input_ids, position_ids + 2, token_type_ids, attention_mask=ones)
        # left padding: the first three inputs of row 0 are masked out
        mask = ones.clone()
        mask[0, :3] = 0
        masked = model(input_ids, attention_mask=mask).logits
        parent_masked = transformers.GPT2LMHeadModel.forward(
            model, input_ids=input_ids, attention_mask=mask
        ).logits
        last_two = model(input_ids, logits_to_keep=2).logits
    torch.testing.assert_close(out.logits, plain)
    torch.testing.assert_close(masked, parent_masked)
    assert not torch.allclose(masked[0, 3:], model(input_ids)[0, 3:].detach())
    torch.testing.assert_close(masked[1:], model(input_ids)[1:].detach())
    assert last_two.shape == (3, 2, 97)
    torch.testing.assert_close(last_two, model(input_ids)[:, -2:].detach())


def test_bad_label_inputs(model):
    input_ids, position_ids, labels = make_batch(seed=11)
    bad = labels.clone()
    bad[0, 5] = -100
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids, position_ids, None, bad)
    with pytest.raises(
        TypeError, match=r"^lm_labels cannot be combined with \['attention_mask'\]$"
    ):
        model(input_ids, lm_labels=labels, attention_mask=torch.ones_like(labels))
    with pytest.raises(
        TypeError,
        match=r"^lm_labels cannot be combined with \['output_attentions', 'return_dict'\]$",
    ):
        model(input_ids, lm_labels=labels, return_dict=True, output_attentions=True)
    with pytest.raises(
        TypeError,
        match=r"^lm_labels cannot be combined with \['return_dict', 'attention_mask'\]$",
    ):
        model(input_ids, lm_labels=labels, attention_mask=torch.ones_like(labels), return_dict=True)
    with pytest.raises(
        ValueError, match=r"^lm_labels shape \(3, 4\) does not match input shape \(3, 10\)$"
    ):
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


# Beam search. `generate` runs our forward through Hugging Face's cached, beam-reordered
# path; the references below score every candidate with plain full-sequence calls of the
# same model, so a wrong cache, position or beam bookkeeping shows up as a different result.
BEAM_VOCAB = 11
BEAM_EOS = 10
BEAM_PROMPTS = [[3, 1, 4, 1], [5, 9, 2, 6]]


@pytest.fixture(scope="module")
def beam_model() -> GPT2LMHeadModel:
    # A small vocabulary makes exhaustive search cheap; the wider initialisation gives peaked
    # distributions, so the best hypotheses are separated by far more than float noise (the
    # tests check their margins before relying on them).
    torch.manual_seed(5)
    config = small_config(
        vocab_size=BEAM_VOCAB, bos_token_id=BEAM_EOS, eos_token_id=BEAM_EOS, initializer_range=0.2
    )
    return GPT2LMHeadModel(config).eval()


def next_log_probs(model, sequences: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor(sequences))[:, -1].float(), dim=-1)


def brute_force_hypotheses(model, prompt: list[int], max_new: int, eos: int):
    """Every finished continuation: ends with eos before ``max_new`` or has ``max_new`` tokens.

    Returns ``(tokens, sum of log-probs)`` pairs.
    """
    hyps = []
    prefixes: list[tuple[list[int], float]] = [([], 0.0)]
    for step in range(max_new):
        log_probs = next_log_probs(model, [prompt + seq for seq, _ in prefixes])
        extended = []
        for (seq, score), lp in zip(prefixes, log_probs):
            for tok in range(lp.numel()):
                item = (seq + [tok], score + lp[tok].item())
                if tok == eos or step == max_new - 1:
                    hyps.append(item)
                else:
                    extended.append(item)
        prefixes = extended
    return hyps


def reference_beam_search(model, prompt: list[int], num_beams: int, steps: int):
    """Textbook beam search without eos: keep the ``num_beams`` best prefixes at every step.

    Returns the final beams, best first, and the smallest score gap at a cut (kept beam vs
    first dropped candidate) so that callers can check the result is not decided by noise.
    """
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    min_gap = math.inf
    for _ in range(steps):
        log_probs = next_log_probs(model, [prompt + seq for seq, _ in beams])
        candidates = sorted(
            (
                (seq + [tok], score + lp[tok].item())
                for (seq, score), lp in zip(beams, log_probs)
                for tok in range(lp.numel())
            ),
            key=lambda c: -c[1],
        )
        min_gap = min(min_gap, candidates[num_beams - 1][1] - candidates[num_beams][1])
        beams = candidates[:num_beams]
    return beams, min_gap


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_with_full_width_equals_exhaustive_search(beam_model, length_penalty):
    """With one beam per possible prefix, beam search is exact: it must return the best of
    all continuations under HF's documented score, ``sum(log p) / length ** length_penalty``,
    where a hypothesis ends at eos or at ``max_new_tokens``."""
    max_new = 3
    prompt = torch.tensor(BEAM_PROMPTS)
    out = beam_model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=max_new,
        num_beams=BEAM_VOCAB ** (max_new - 1),  # every prefix of length max_new - 1 fits
        do_sample=False,
        eos_token_id=BEAM_EOS,
        pad_token_id=BEAM_EOS,
        length_penalty=length_penalty,
        return_dict_in_generate=True,
        output_scores=True,
    )
    expected, expected_scores, lengths = [], [], []
    for row in BEAM_PROMPTS:
        hyps = brute_force_hypotheses(beam_model, row, max_new, BEAM_EOS)
        ranked = sorted(hyps, key=lambda h: -h[1] / len(h[0]) ** length_penalty)
        (best, best_sum), (second, second_sum) = ranked[0], ranked[1]
        best_score = best_sum / len(best) ** length_penalty
        assert best_score - second_sum / len(second) ** length_penalty > 1e-3
        expected.append(row + best)
        expected_scores.append(best_score)
        lengths.append(len(best))
    # shorter results are padded to the batch's longest one
    width = max(len(seq) for seq in expected)
    expected = [seq + [BEAM_EOS] * (width - len(seq)) for seq in expected]
    assert out.sequences.tolist() == expected
    torch.testing.assert_close(
        out.sequences_scores, torch.tensor(expected_scores), rtol=0, atol=1e-4
    )
    # with this model the first prompt's best hypothesis is eos right away unless length is
    # rewarded (penalty 2), so the settings cover both stopping cases and the padding
    assert lengths == {0.0: [1, 3], 1.0: [1, 3], 2.0: [3, 3]}[length_penalty]


def test_beam_search_matches_reference_and_beats_greedy(beam_model):
    """A narrow beam keeps the ``num_beams`` best prefixes at each step (compared with a
    reference beam search); it can find a better sequence than greedy search, and with
    ``num_beams=1`` it is greedy search."""
    steps, num_beams = 4, 3
    prompt = torch.tensor(BEAM_PROMPTS)
    common = dict(
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=steps,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=BEAM_EOS,
        length_penalty=1.0,
        return_dict_in_generate=True,
        output_scores=True,
    )
    out = beam_model.generate(prompt, num_beams=num_beams, num_return_sequences=num_beams, **common)
    greedy = beam_model.generate(prompt, num_beams=1, **common).sequences
    gains = []
    for i, row in enumerate(BEAM_PROMPTS):
        beams, min_gap = reference_beam_search(beam_model, row, num_beams, steps)
        assert min_gap > 1e-3
        got = out.sequences[i * num_beams : (i + 1) * num_beams]
        assert got.tolist() == [row + seq for seq, _ in beams]
        # no eos: every beam has `steps` tokens, so its score is the mean log-prob
        torch.testing.assert_close(
            out.sequences_scores[i * num_beams : (i + 1) * num_beams],
            torch.tensor([total / steps for _, total in beams]),
            rtol=0,
            atol=1e-4,
        )
        [(greedy_seq, greedy_total)], _ = reference_beam_search(beam_model, row, 1, steps)
        assert greedy[i].tolist() == row + greedy_seq
        gains.append(beams[0][1] - greedy_total)
    # The first prompt's greedy path starts with a locally best token that leads nowhere
    # good: the beam finds a clearly better sequence. For the second, both agree.
    assert gains[0] > 0.1
    assert abs(gains[1]) < 1e-5
    assert out.sequences[0].tolist() != greedy[0].tolist()
    assert out.sequences[num_beams].tolist() == greedy[1].tolist()


def test_autocast_keeps_loss_in_float32(model):
    input_ids, position_ids, labels = make_batch(seed=12)
    with torch.no_grad():
        ref_loss, ref_ppl = model(input_ids, position_ids, None, labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, ppl = model(input_ids, position_ids, None, labels)
    assert loss.dtype == torch.float32 and ppl.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=0)
    torch.testing.assert_close(ppl, ref_ppl, rtol=5e-2, atol=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_bf16_autocast_loss_and_grads_follow_the_plain_autocast_path(monkeypatch, weighted):
    # Under autocast the fused path multiplies in bf16 like the plain path (lm_head under
    # autocast, then float32 cross-entropy): the same loss and gradients to bf16 precision.
    monkeypatch.setitem(lsp_model.modeling.CHUNK_ELEMENTS, "cpu", 97 * 4)
    torch.manual_seed(5)
    m = GPT2LMHeadModel(small_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    input_ids, position_ids, labels = make_batch(seed=6)
    weights = torch.rand(labels.shape) if weighted else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = m(input_ids, position_ids, None, labels, weights)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(input_ids, position_ids)
    ce = F.cross_entropy(
        logits.float().reshape(-1, 97), labels.reshape(-1), ignore_index=-1, reduction="none"
    )
    w = (labels.reshape(-1) != -1).float() * (1.0 if weights is None else weights.reshape(-1))
    ref = (w * ce).sum() / w.sum()
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-3, atol=1e-3)
    for n, p in m.named_parameters():
        scale = p.grad.abs().max().item() + 1e-12
        assert (grads[n] - p.grad).abs().max().item() <= 2e-2 * scale, n


def test_float16_gradient_keeps_small_probabilities():
    # float16 runs scale the loss only in backward, after the fused path has made its
    # gradient: with coef = 1/positions, coef * softmax would fall below float16's range.
    torch.manual_seed(7)
    n, vocab = 64, 5000
    hidden = torch.randn(n, 16, requires_grad=True)
    weight = (torch.randn(vocab, 16) * 0.02).requires_grad_()
    targets = torch.randint(0, vocab, (n,))
    coef = torch.full((n,), 1 / 5000)
    grads = {}
    for dtype in (torch.float32, torch.float16):
        hidden.grad = weight.grad = None
        loss, _ = lsp_model.modeling._ProjectedCrossEntropy.apply(
            hidden, weight, targets, coef, dtype
        )
        loss.backward()
        grads[dtype] = (hidden.grad.clone(), weight.grad.clone())
    for exact, half in zip(grads[torch.float32], grads[torch.float16]):
        assert (half - exact).norm() <= 1e-2 * exact.norm()


def _projected_reference(hidden, weight, targets, coef, dtype):
    """The plain computation: full logits in `dtype`, float32 cross-entropy, autograd."""
    h = hidden.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_()
    logits = (h.to(dtype) @ w.to(dtype).t()).float()
    ce = F.cross_entropy(logits, targets, reduction="none")
    loss = (coef * ce).sum()
    loss.backward()
    return loss.detach(), ce.detach(), h.grad, w.grad


def _projected(hidden, weight, targets, coef, dtype):
    h = hidden.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_()
    loss, ce = lsp_model.modeling._ProjectedCrossEntropy.apply(h, w, targets, coef, dtype)
    loss.backward()
    return loss.detach(), ce, h.grad, w.grad


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("uniform", [True, False])
def test_both_softmax_paths_match_the_plain_computation(monkeypatch, fused, dtype, uniform):
    # The CPU takes the chunk's softmax with torch's kernel and reads the loss off the
    # target's probability; GPUs (and float16) write the passes out. Both are checked here,
    # on the CPU, against full logits and autograd.
    monkeypatch.setattr(lsp_model.modeling, "_fused_softmax_applies", lambda d, t: fused)
    monkeypatch.setitem(lsp_model.modeling.CHUNK_ELEMENTS, "cpu", 3 * 500)
    monkeypatch.setattr(lsp_model.modeling, "CPU_FLOAT32_TILE", (3, 64))
    g = torch.Generator().manual_seed(11)
    n, vocab = 20, 500
    hidden = torch.randn(n, 16, generator=g)
    weight = torch.randn(vocab, 16, generator=g) * 0.5
    targets = torch.randint(0, vocab, (n,), generator=g)
    coef = torch.full((n,), 1 / n) if uniform else torch.rand(n, generator=g) / n
    got = _projected(hidden, weight, targets, coef, dtype)
    ref = _projected_reference(hidden, weight, targets, coef, dtype)
    if dtype == torch.float32:
        tol = {"rtol": 1e-5, "atol": 1e-6}
    else:  # bf16 logits either way; the fused path rounds the probabilities once more
        tol = {"rtol": 1e-2, "atol": 5e-3}
    for a, b, name in zip(got, ref, ("loss", "ce", "grad hidden", "grad weight")):
        torch.testing.assert_close(a, b, **tol, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_target_probability_below_the_dtype_range_still_gets_its_exact_loss(dtype):
    # One row's target is ruled out by ~200 nats: its probability has no float32/bf16 value,
    # so the fused path recomputes that row's log-sum-exp instead of returning inf.
    vocab = 50
    weight = torch.eye(vocab, 8)
    hidden = torch.zeros(3, 8)
    hidden[1, 0] = 200.0  # row 1 strongly predicts token 0 ...
    targets = torch.tensor([5, 7, 3])  # ... and its target is 7
    coef = torch.full((3,), 1 / 3)
    loss, ce, grad_hidden, _ = _projected(hidden, weight, targets, coef, dtype)
    ref_loss, ref_ce, ref_grad_hidden, _ = _projected_reference(
        hidden, weight, targets, coef, dtype
    )
    assert torch.isfinite(ce).all()
    assert ce[1].item() == pytest.approx(200.0, rel=1e-3)
    torch.testing.assert_close(ce, ref_ce, rtol=1e-3, atol=5e-3)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=5e-3)
    torch.testing.assert_close(grad_hidden, ref_grad_hidden, rtol=1e-2, atol=1e-3)


def test_interleaved_calls_keep_their_own_gradients():
    # The CPU path reuses one buffer for the logits' gradient from call to call: two forward
    # passes before either backward (as gradient accumulation or a second loss would do)
    # must still give each call its own gradients.
    g = torch.Generator().manual_seed(12)
    vocab = 300
    weight = torch.randn(vocab, 16, generator=g) * 0.5
    calls = []
    for n in (7, 11):
        hidden = torch.randn(n, 16, generator=g)
        targets = torch.randint(0, vocab, (n,), generator=g)
        calls.append((hidden, targets, torch.full((n,), 1 / n)))
    leaves = [(h.clone().requires_grad_(), weight.clone().requires_grad_()) for h, _, _ in calls]
    losses = [
        lsp_model.modeling._ProjectedCrossEntropy.apply(h, w, t, c, torch.float32)[0]
        for (h, w), (_, t, c) in zip(leaves, calls)
    ]
    for loss in reversed(losses):
        loss.backward()
    for (h, w), (hidden, targets, coef) in zip(leaves, calls):
        _, _, ref_h, ref_w = _projected_reference(hidden, weight, targets, coef, torch.float32)
        torch.testing.assert_close(h.grad, ref_h, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(w.grad, ref_w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_gradient_comes_out_contiguous(dtype):
    # The vocabulary-sized gradient is made transposed in bf16; it must reach autograd as a
    # contiguous tensor of its own, or adding the embedding's gradient to it makes a new one.
    g = torch.Generator().manual_seed(13)
    hidden = torch.randn(9, 16, generator=g, requires_grad=True)
    weight = (torch.randn(300, 16, generator=g) * 0.5).requires_grad_()
    seen = []
    weight.register_hook(lambda grad: seen.append(grad.is_contiguous()))
    targets = torch.randint(0, 300, (9,), generator=g)
    loss, _ = lsp_model.modeling._ProjectedCrossEntropy.apply(
        hidden, weight, targets, torch.full((9,), 1 / 9), dtype
    )
    loss.backward()
    assert seen == [True]


def test_compiled_model_does_not_recompile_when_the_labelled_count_changes():
    # The loss's shapes follow the labels; it stays eager, so torch.compile compiles the
    # transformer once rather than once per batch (which made --compile slower than eager).
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    torch.manual_seed(0)
    m = GPT2LMHeadModel(small_config())
    counter = CompileCounter()
    m.compile(backend=counter)
    input_ids = torch.randint(0, 97, (2, 12))
    compiled = []
    for context in (3, 5, 7, 9):
        labels = input_ids.clone()
        labels[:, :context] = -1
        m(input_ids, None, None, labels)[0].backward()
        compiled.append(counter.frame_count)
    torch._dynamo.reset()
    assert compiled == [compiled[0]] * 4
