import math
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2_training.plot import TRAIN_COLUMNS, main, read_log

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_HEADER = "epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time"
EVAL_HEADER = "epoch,global_step,step,eval_loss,eval_ppl"


def write_run(folder: Path, n_steps: int = 30, with_eval: bool = True) -> Path:
    lines = [TRAIN_HEADER]
    for s in range(1, n_steps + 1):
        loss = 9.0 * math.exp(-s / 15) + 2.0
        lines.append(
            f"0,{s},{2 * s},{loss:.4f},{math.exp(loss):.4f},{100 * s},{128 * s},{0.1 * s:.2f}"
        )
    (folder / "train_log.txt").write_text("\n".join(lines) + "\n")
    if with_eval:
        rows = [EVAL_HEADER] + [
            f"0,{s},{2 * s},{2.0 + 8 / s:.4f},{math.exp(2.0 + 8 / s):.4f}" for s in (10, 20, 30)
        ]
        (folder / "eval_log.txt").write_text("\n".join(rows) + "\n")
    return folder


def test_default_output(tmp_path, capsys):
    write_run(tmp_path)
    assert main([str(tmp_path)]) == 0
    out = tmp_path / "training_curves.png"
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert "30 training rows, 3 validation rows" in capsys.readouterr().out
    # nothing temporary left beside the result
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval_log.txt",
        "train_log.txt",
        "training_curves.png",
    ]


def test_custom_output_without_eval_log(tmp_path):
    write_run(tmp_path, with_eval=False)
    out = tmp_path / "plots" / "curves.png"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_header_only_eval_log_and_nonfinite_values(tmp_path):
    write_run(tmp_path)
    (tmp_path / "eval_log.txt").write_text(EVAL_HEADER + "\n")
    with open(tmp_path / "train_log.txt", "a") as f:
        f.write("0,31,62,nan,inf,3100,3968,3.1\n")
    assert main([str(tmp_path)]) == 0


def test_read_log_ignores_extra_columns(tmp_path):
    path = tmp_path / "train_log.txt"
    path.write_text(TRAIN_HEADER + ",lr\n0,1,2,3.5,33.1,10,12,0.5,1e-5\n")
    data = read_log(path, TRAIN_COLUMNS)
    assert data["global_step"] == [1.0] and data["mean_ppl"] == [33.1]


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "train_log.txt: no such file"),
        ("", "train_log.txt: empty file"),
        (TRAIN_HEADER + "\n", "header only"),
        ("step,loss\n1,2\n", "train_log.txt:1: header lacks column(s) epoch, global_step"),
        (TRAIN_HEADER + "\n0,1,2,3.5,33.1,10,12,0.5\n0,2,4,3.4\n", "train_log.txt:3: 4 fields"),
        (TRAIN_HEADER + "\n0,1,2,abc,33.1,10,12,0.5\n", "train_log.txt:2: column mean_loss"),
    ],
)
def test_bad_train_log(tmp_path, capsys, content, expected):
    if content is not None:
        (tmp_path / "train_log.txt").write_text(content)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(tmp_path) in err
    assert not (tmp_path / "training_curves.png").exists()


def test_bad_eval_log_and_bad_run_dir(tmp_path, capsys):
    write_run(tmp_path)
    (tmp_path / "eval_log.txt").write_text(EVAL_HEADER + "\n0,10,20,2.5\n")
    assert main([str(tmp_path)]) == 2
    assert "eval_log.txt:2: 4 fields" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_runs_as_module(tmp_path):
    write_run(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpt2_training.plot",
            str(tmp_path),
            "--out",
            str(tmp_path / "c.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)
