"""bench/train_bench.py runs end to end on a tiny model and reports what the README quotes."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_bench():
    spec = importlib.util.spec_from_file_location("train_bench", REPO / "bench" / "train_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(tmp_path: Path, *extra: str) -> dict:
    """The bench on the tiny model, one timed step per variant; its JSON report, read strictly
    (NaN or Infinity, which are not JSON, fail the test)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    out = tmp_path / "bench.json"
    argv = ["--model", str(REPO / "configs" / "tiny"), "--lines", "300", "--batch", "4"]
    argv += ["--steps", "1", "--rounds", "1", "--warmup", "1", "--json", str(out), *extra]
    assert _load_bench().main(argv) == 0
    return json.loads(out.read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_train_bench_reports_every_variant_and_the_ceiling(tmp_path, capsys):
    report = run_bench(tmp_path, "--precisions", "fp32,bf16")  # bf16 native or not
    names = {"baseline", "toolkit fp32", "toolkit+budget fp32", "toolkit bf16"}
    assert names <= set(report["results"])
    for name, row in report["results"].items():
        assert row["tokens_per_s"] > 0 and row["real"] > 0, name
        assert 0 <= row["padding"] < 1, name
    assert report["results"]["baseline"]["ratio"] == pytest.approx(1.0)
    # Dialogue batches: the first turn of each is context, so some positions carry no label,
    # and the toolkit's step needs fewer FLOPs than the full-logits count.
    assert 0 < report["labelled_share"] < 1
    assert 0 < report["needed_flops_per_token"] < report["flops_per_token"]
    printed = capsys.readouterr().out
    assert "ceiling at the measured peak" in printed and "fp32" in printed


@pytest.mark.slow
def test_without_a_baseline_the_ratio_is_null(tmp_path, capsys):
    report = run_bench(tmp_path, "--precisions", "fp32", "--batching", "fixed", "--no_baseline")
    assert [row["ratio"] for row in report["results"].values()] == [None]
    assert "toolkit fp32" in capsys.readouterr().out


@pytest.mark.parametrize(("native", "expected"), [(False, "fp32"), (True, "fp32,bf16")])
def test_default_precisions_leave_out_emulated_bf16(monkeypatch, capsys, native, expected):
    import torch

    bench = _load_bench()
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: native)
    assert bench.default_precisions(torch.device("cpu")) == expected
    assert ("bf16 left out" in capsys.readouterr().out) is not native
    assert bench.default_precisions(torch.device("cuda")) == "fp32,bf16"
