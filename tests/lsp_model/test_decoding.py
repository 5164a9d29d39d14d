import itertools
from pathlib import Path

import pytest
import torch

from lsp_data.tokenizer import EOS_ID, load_tokenizer
from lsp_model.decoding import encode_history, generate_replies, generate_reply
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "config.json"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config.from_json_file(TINY_CONFIG)).eval()


def forced_model(token_id: int) -> GPT2LMHeadModel:
    """A model whose every next-token prediction is ``token_id``."""
    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config.from_json_file(TINY_CONFIG)).eval()
    with torch.no_grad():
        direction = torch.randn(m.config.n_embd)
        m.transformer.wte.weight[token_id] = 10 * direction / direction.norm()
        # ln_f with zero gain outputs its bias at every position, whatever the input
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.copy_(m.transformer.wte.weight[token_id])
    return m


def spy_generate(monkeypatch, m):
    calls = []
    original = m.generate

    def wrapper(input_ids, **kwargs):
        out = original(input_ids, **kwargs)
        calls.append((input_ids.clone(), kwargs, out.clone()))
        return out

    monkeypatch.setattr(m, "generate", wrapper)
    return calls


def test_encode_history(tokenizer):
    ids = encode_history(tokenizer, ["Hello there", "Hi!"])
    hello, hi = tokenizer.encode("Hello there"), tokenizer.encode("Hi!")
    assert ids == hello + [EOS_ID] + hi + [EOS_ID]
    assert encode_history(tokenizer, ["Hello there", "Hi!"], max_context_tokens=3) == ids[-3:]
    assert encode_history(tokenizer, []) == [EOS_ID]
    with pytest.raises(ValueError):
        encode_history(tokenizer, ["x"], max_context_tokens=0)


def test_greedy_is_deterministic_and_returns_text(model, tokenizer, monkeypatch):
    calls = spy_generate(monkeypatch, model)
    history = ["Does money buy happiness?", "Depends how much money you spend on it ."]
    a = generate_reply(model, tokenizer, history, max_new_tokens=8)
    b = generate_reply(model, tokenizer, history, max_new_tokens=8)
    assert isinstance(a, str) and a == b and a == a.strip()
    input_ids, kwargs, out = calls[0]
    assert input_ids[0].tolist() == encode_history(tokenizer, history)
    assert torch.equal(kwargs["attention_mask"], torch.ones_like(input_ids))
    assert kwargs["pad_token_id"] == EOS_ID and kwargs["eos_token_id"] == EOS_ID
    assert 1 <= out.size(1) - input_ids.size(1) <= 8


def test_stops_at_eos(tokenizer, monkeypatch):
    m = forced_model(EOS_ID)
    calls = spy_generate(monkeypatch, m)
    assert generate_reply(m, tokenizer, ["Hi"], max_new_tokens=10) == ""
    input_ids, _, out = calls[0]
    assert out.size(1) - input_ids.size(1) == 1 and out[0, -1].item() == EOS_ID


def test_stops_at_max_new_tokens(tokenizer):
    yes = tokenizer.encode(" yes")
    assert len(yes) == 1
    m = forced_model(yes[0])
    for method in ("greedy", "beam", "sample"):
        reply = generate_reply(m, tokenizer, ["Hi"], max_new_tokens=5, method=method)
        assert reply == "yes yes yes yes yes", method


def test_context_cut_from_left(model, tokenizer, monkeypatch):
    calls = spy_generate(monkeypatch, model)
    history = [f"turn number {i} of a long chat" for i in range(30)]
    generate_reply(model, tokenizer, history, max_new_tokens=3, max_context_tokens=20)
    input_ids = calls[0][0]
    assert input_ids[0].tolist() == encode_history(tokenizer, history)[-20:]
    assert input_ids[0, -1].item() == EOS_ID


def test_sampling_is_seeded(model, tokenizer):
    kw = dict(method="sample", top_k=0, top_p=0.9, temperature=0.7, max_new_tokens=6)
    torch.manual_seed(123)
    a = generate_reply(model, tokenizer, ["Hi"], **kw)
    torch.manual_seed(123)
    b = generate_reply(model, tokenizer, ["Hi"], **kw)
    assert a == b


@pytest.mark.parametrize(
    "options", [dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)], ids=str
)
def test_sampling_filters_are_applied(model, tokenizer, options):
    # Each filter at its extreme leaves only the most likely token: sampling becomes greedy.
    # (Unfiltered sampling from the same model differs from greedy: see the check below.)
    greedy = generate_reply(model, tokenizer, ["Hi"], max_new_tokens=6)
    for seed in range(3):
        torch.manual_seed(seed)
        assert (
            generate_reply(model, tokenizer, ["Hi"], method="sample", max_new_tokens=6, **options)
            == greedy
        )
    torch.manual_seed(0)
    assert generate_reply(model, tokenizer, ["Hi"], method="sample", max_new_tokens=6) != greedy


# Beam search checked against an exhaustive search. The model below can only produce the
# tokens of BEAM_WORDS (every other token, <|endoftext|> included, scores ~-1000), so the
# replies of BEAM_LENGTH tokens are few enough to score them all, and all have the same
# length, so ranking by summed log-probability is exactly what beam search does.
BEAM_WORDS = (" yes", " no", " maybe", " ok")
BEAM_LENGTH = 3


@pytest.fixture(scope="module")
def narrow_model(tokenizer):
    allowed = [tokenizer.encode(w)[0] for w in BEAM_WORDS]
    config = GPT2Config.from_json_file(TINY_CONFIG)
    config.initializer_range = 0.1  # next-token scores close enough for greedy to go wrong
    torch.manual_seed(4)
    m = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        # ln_f's dimension 0 is constant 10; embedding dimension 0 is -100 except on the
        # allowed tokens, so every other token's logit drops by 1000.
        m.transformer.ln_f.weight[0] = 0.0
        m.transformer.ln_f.bias[0] = 10.0
        m.transformer.wte.weight[:, 0] = -100.0
        m.transformer.wte.weight[allowed, 0] = 0.0
    return m, allowed


def _sequence_logprobs(m, context, replies):
    x = torch.tensor([context + list(r) for r in replies])
    with torch.no_grad():
        logprobs = torch.log_softmax(m(x).float(), dim=-1)
    n = len(context)
    return [
        sum(logprobs[i, n - 1 + t, r[t]].item() for t in range(len(r)))
        for i, r in enumerate(replies)
    ]


def _reference_beam(m, context, allowed, num_beams):
    """Textbook beam search: keep the num_beams best prefixes by summed log-probability."""
    beams = [()]
    for _ in range(BEAM_LENGTH):
        candidates = [b + (v,) for b in beams for v in allowed]
        scores = _sequence_logprobs(m, context, candidates)
        ranked = sorted(zip(scores, candidates), key=lambda c: -c[0])
        beams = [c for _, c in ranked[:num_beams]]
    return beams[0]


def test_beam_search_finds_what_exhaustive_search_finds(narrow_model, tokenizer, monkeypatch):
    m, allowed = narrow_model
    history = ["Hi"]
    context = encode_history(tokenizer, history)
    everything = list(itertools.product(allowed, repeat=BEAM_LENGTH))
    scores = dict(zip(everything, _sequence_logprobs(m, context, everything)))
    best = max(everything, key=scores.get)
    exhaustive = len(allowed) ** (BEAM_LENGTH - 1)  # every prefix kept until the last step
    expected = {k: _reference_beam(m, context, allowed, k) for k in (1, 2, exhaustive)}
    assert expected[exhaustive] == best
    # The case is only a test if the beam width changes the answer.
    assert scores[expected[1]] < scores[expected[2]] < scores[best]

    calls = spy_generate(monkeypatch, m)
    greedy = generate_reply(m, tokenizer, history, max_new_tokens=BEAM_LENGTH)
    assert greedy == tokenizer.decode(expected[1]).strip()
    for k, reply_ids in expected.items():
        reply = generate_reply(
            m, tokenizer, history, method="beam", num_beams=k, max_new_tokens=BEAM_LENGTH
        )
        assert reply == tokenizer.decode(reply_ids).strip(), k
        input_ids, _, out = calls[-1]
        assert tuple(out[0, input_ids.size(1) :].tolist()) == reply_ids, k


def test_mode_restored_and_bad_arguments(tokenizer):
    m = forced_model(EOS_ID).train()
    generate_reply(m, tokenizer, ["Hi"], max_new_tokens=2)
    assert m.training
    with pytest.raises(ValueError, match="greedy, sample, beam"):
        generate_reply(m, tokenizer, ["Hi"], method="nucleus")
    with pytest.raises(ValueError, match="temperature"):
        generate_reply(m, tokenizer, ["Hi"], method="sample", temperature=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_reply(m, tokenizer, ["Hi"], max_new_tokens=2000)


HISTORIES = [
    ["hello there"],
    ["how are you doing today ?", "fine thanks"],
    ["a"],
    ["tell me more about the weather where you live , it is sunny here"],
    ["yes", "no"],
]


@pytest.fixture(scope="module")
def peaked_model():
    """Random weights with a wide init, so next-token scores are far apart: no near-ties that
    float noise could flip between batched and single decoding."""
    config = GPT2Config.from_json_file(TINY_CONFIG)
    config.initializer_range = 0.3
    torch.manual_seed(1)
    return GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_batched_replies_equal_one_at_a_time(peaked_model, tokenizer, method):
    options = dict(method=method, num_beams=3, max_new_tokens=8)
    single = [generate_reply(peaked_model, tokenizer, h, **options) for h in HISTORIES]
    assert len(set(single)) > 1  # the contexts lead to different replies
    done = []
    batched = generate_replies(
        peaked_model, tokenizer, HISTORIES, batch_size=3, progress=done.append, **options
    )
    assert batched == single
    assert done == [3, 2]


def test_batched_sampling_is_seeded_and_rows_differ(peaked_model, tokenizer):
    options = dict(method="sample", max_new_tokens=8, batch_size=4)
    torch.manual_seed(3)
    first = generate_replies(peaked_model, tokenizer, [["hello there"]] * 4, **options)
    torch.manual_seed(3)
    assert generate_replies(peaked_model, tokenizer, [["hello there"]] * 4, **options) == first
    assert len(set(first)) > 1  # each row draws its own sample


def test_repetition_penalty_and_streamer(tokenizer):
    from transformers import TextIteratorStreamer

    yes = tokenizer.encode(" yes")[0]
    m = forced_model(yes)
    assert generate_reply(m, tokenizer, ["Hi"], max_new_tokens=3) == "yes yes yes"
    # Penalised once generated, " yes" (score 100) drops below the other tokens.
    penalised = generate_reply(m, tokenizer, ["Hi"], max_new_tokens=3, repetition_penalty=1e4)
    assert penalised.startswith("yes") and "yes yes" not in penalised
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        generate_reply(m, tokenizer, ["Hi"], repetition_penalty=0)

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    assert generate_reply(m, tokenizer, ["Hi"], max_new_tokens=3, streamer=streamer) == (
        "yes yes yes"
    )
    assert "".join(streamer).strip() == "yes yes yes"  # the reply's tokens, not the context
    with pytest.raises(ValueError, match="one history at a time"):
        generate_replies(m, tokenizer, [["Hi"], ["Yo"]], streamer=streamer)
