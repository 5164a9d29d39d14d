"""The DSTC-7 demo reproduces its published figures to 4 decimals."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from dstc.metrics import calc_avg_len, calc_diversity, calc_entropy, meteor, nist_bleu


def test_nist_bleu(demo):
    hyps, refs, expected = demo
    nist, bleu = nist_bleu(hyps, refs)
    assert nist == expected["nist"]
    assert bleu == expected["bleu"]


def test_entropy_distinct_length(demo):
    hyps, _, expected = demo
    assert [round(x, 4) for x in calc_entropy(hyps)] == expected["entropy"]
    assert [round(x, 4) for x in calc_diversity(hyps)] == expected["distinct"]
    assert calc_avg_len(hyps) == expected["avg_len"]


def test_entropy_exact_values(demo):
    # 15 unigrams: "i" and "." twice, 11 once -> -(2*(2/15)ln(2/15) + 11*(1/15)ln(1/15))
    import math

    hyps, _, _ = demo
    h1 = -(2 * (2 / 15) * math.log(2 / 15) + 11 * (1 / 15) * math.log(1 / 15))
    assert calc_entropy(hyps)[0] == pytest.approx(h1, abs=1e-12)
    # 12 distinct bigrams, 9 distinct trigrams, 6 distinct 4-grams: ln 12, ln 9, ln 6
    assert calc_entropy(hyps)[1:] == pytest.approx(
        [math.log(12), math.log(9), math.log(6)], abs=1e-12
    )


@pytest.mark.slow
def test_meteor_with_and_without_norm(demo, meteor_ready):
    hyps, refs, expected = demo
    # Two JVMs at once: each spends most of its time loading the paraphrase table.
    with ThreadPoolExecutor(2) as pool:
        with_norm = pool.submit(meteor, hyps, refs, norm=True)
        without = pool.submit(meteor, hyps, refs, norm=False)
        assert round(with_norm.result(), 4) == expected["meteor_l_en_norm"]
        assert round(without.result(), 4) == expected["meteor_l_en"]
