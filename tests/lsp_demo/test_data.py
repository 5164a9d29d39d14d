"""lsp_demo.data: Reddit data for --data small|full and the hold-out split."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_demo import REPO, data
from lsp_demo import cli as demo


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_reddit_data_without_dumps_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    months = data.read_months(REPO / "configs" / "reddit" / "train.small.txt")
    (dumps / f"RS_{months[0]}.zst").write_bytes(b"")  # one present: not reported missing
    status = demo.main(
        [
            "--data",
            "small",
            "--model",
            "tiny",
            "--reddit_dumps",
            str(dumps),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "Pushshift dumps" in err and "make -C reddit_extractor download SIZE=small" in err
    assert f"RC_{months[0]}" in err and f"RS_{months[0]}," not in err
    assert f"{2 * len(months) - 1} of {2 * len(months)} are missing" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "data" / "small" / "train.tsv").exists()


def test_split_reddit_holds_out_weighted_lines(tmp_path: Path) -> None:
    extracted = tmp_path / "extracted.tsv"
    lines = [f"1.0 hi {i} EOS 0.0 so {i}\t1.0 reply {i}" for i in range(40)]
    lines[9] = "1.0 hello\t0.0 not a target"  # would be held out, but has no target
    extracted.write_text("\n".join(lines) + "\n", encoding="utf-8")
    n_train, n_valid = data.split_reddit(
        extracted, tmp_path / "train.tsv", tmp_path / "valid.tsv", max_valid=4
    )
    train, valid = _read(tmp_path / "train.tsv"), _read(tmp_path / "valid.tsv")
    # Every 10th line (40 lines, at most 4 pairs); line 10 has no target, so it stays.
    assert (n_train, n_valid) == (len(train), len(valid)) == (37, 3)
    assert valid == [
        "hi 19 EOS so 19\treply 19",
        "hi 29 EOS so 29\treply 29",
        "hi 39 EOS so 39\treply 39",
    ]
    assert lines[9] in train
    assert not set(train) & {lines[i] for i in (19, 29, 39)}
