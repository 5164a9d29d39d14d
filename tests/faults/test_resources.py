"""Read-only and full output folders (issue 14, 4): prepro, LSP_train.py --output_dir,
decode.py and the extractor must stop with one line naming the path (no traceback), leave
the previous outputs as they were, and work (or resume) once the folder is writable or has
room again.

Real file systems where the machine allows (as root: a read-only bind mount and a small
tmpfs; otherwise chmod 0555, and the tmpfs tests skip with the reason), and the same code
paths with writes patched to fail with EROFS / ENOSPC, so that the coverage never depends
on ``mount``.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_corpus
from tests.faults.harness import (
    REPO,
    assert_clear_error,
    child_env,
    failing_writes,
    python,
    read_only,
    tmpfs,
    visible_files,
)

pytestmark = pytest.mark.slow

FAULTS = [
    pytest.param(errno.EROFS, id="EROFS"),
    pytest.param(errno.ENOSPC, id="ENOSPC"),
]


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` bytes free; returns the filler."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1 << 16)
        try:
            while shutil.disk_usage(folder).free > leave + len(chunk):
                fh.write(chunk)
                fh.flush()
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
                if shutil.disk_usage(folder).free <= leave:
                    break
        except OSError:
            pass
    return filler


def cli(cmd: list[str], timeout: float = 120) -> tuple[int | None, str]:
    """Run a CLI as a subprocess; a run still going after ``timeout`` is a hang (rc None)."""
    try:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        return None, f"HANG: no exit within {timeout} s\n{exc.stderr or ''}"
    return r.returncode, r.stderr


# ---- prepro -----------------------------------------------------------------------------------

PREPRO = ("--max_seq_len", "64", "--chunk_size", "100", "--workers", "1", "--no_pbar")


@pytest.fixture(scope="module")
def prepro_case(tmp_path_factory):
    """A folder holding an old database and a newer corpus, and the new corpus's database
    as an uninterrupted run writes it."""
    root = tmp_path_factory.mktemp("prepro_case")
    seed = root / "seed"
    seed.mkdir()
    write_corpus(seed / "train.tsv", 60, seed=1)
    rc, err = cli(python(REPO / "prepro.py", "--corpus", seed / "train.tsv", *PREPRO))
    assert rc == 0, err
    write_corpus(seed / "train.tsv", 400, seed=2)  # the corpus changed since
    ref = root / "ref"
    shutil.copytree(seed, ref)
    rc, err = cli(python(REPO / "prepro.py", "--corpus", ref / "train.tsv", "--overwrite", *PREPRO))
    assert rc == 0, err
    return seed, features(ref / "train.64len.db")


def features(db: Path) -> list:
    from lsp_data.db import FeatureDB

    with FeatureDB(db) as reader:
        return [
            {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.items()}
            for f in reader.iter_features()
        ]


def prepro_argv(folder: Path) -> list[str]:
    return ["--corpus", str(folder / "train.tsv"), "--overwrite", *PREPRO]


def check_prepro_failed(rc, err, folder: Path, before: dict[str, bytes], new: list) -> None:
    assert_clear_error(rc, err, folder)
    assert visible_files(folder) == before  # the old database as it was
    rc, err = cli(python(REPO / "prepro.py", *prepro_argv(folder)))
    assert rc == 0, err
    assert features(folder / "train.64len.db") == new


def test_prepro_read_only_folder(prepro_case, tmp_path):
    seed, new = prepro_case
    folder = shutil.copytree(seed, tmp_path / "data")
    before = visible_files(folder)
    with read_only(folder):
        rc, err = cli(python(REPO / "prepro.py", *prepro_argv(folder)))
    check_prepro_failed(rc, err, folder, before, new)


def test_prepro_disk_full(prepro_case, tmp_path):
    seed, new = prepro_case
    folder = tmp_path / "data"
    with tmpfs(folder, 16 * 1024):  # room for two databases with their tokenizer files
        shutil.copytree(seed, folder, dirs_exist_ok=True)
        filler = fill(folder, leave=64 * 1024)  # room for a few chunks, not the database
        before = visible_files(folder)
        del before["filler"]
        rc, err = cli(python(REPO / "prepro.py", *prepro_argv(folder)), timeout=20)
        filler.unlink()  # space freed: the rerun must work
        check_prepro_failed(rc, err, folder, before, new)


@pytest.mark.parametrize("code", FAULTS)
def test_prepro_writes_refused(prepro_case, tmp_path, capsys, code):
    from lsp_data.prepro_cli import main

    seed, new = prepro_case
    folder = shutil.copytree(seed, tmp_path / "data")
    before = visible_files(folder)
    with failing_writes(folder, code) as refused:
        rc = main(prepro_argv(folder))
    assert refused, "no write was attempted under the folder"
    check_prepro_failed(rc, capsys.readouterr().err, folder, before, new)


# ---- training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_case(tmp_path_factory):
    """Training data, an earlier run in an output folder, and the reference run (4 steps,
    a checkpoint every 2) that the tests' runs must equal."""
    import LSP_train
    from tests.gpt2_training.conftest import make_train_data, train_argv

    root = tmp_path_factory.mktemp("train_case")
    data = make_train_data(root, 200, 100, "hello there EOS how are you\tfine thanks\n")

    def argv(out: Path, *extra: str) -> list[str]:
        args = train_argv(data, out, "--num_optim_steps", "4", "--valid_step", "4")
        return [*args, "--save_step", "2", "--keep_checkpoints", "1", "--skip_eval", *extra]

    previous = root / "previous"
    prev_run = LSP_train.main(argv(previous, "--num_optim_steps", "2"))
    assert isinstance(prev_run, Path)
    ref_run = LSP_train.main(argv(root / "ref"))
    assert isinstance(ref_run, Path)
    ckpt_bytes = sum(f.stat().st_size for f in (ref_run / "checkpoints").rglob("*") if f.is_file())
    return argv, previous, ref_run, ckpt_bytes


def final_weights(run: Path) -> dict:
    from lsp_model.loading import load_state_dict_file

    return load_state_dict_file(run / "GP2-pretrain-step-4.pkl")


def assert_same_run(run: Path, ref_run: Path) -> None:
    import torch

    from tests.faults.test_kills import train_rows

    assert train_rows(run) == train_rows(ref_run)
    got, want = final_weights(run), final_weights(ref_run)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_training_read_only_output_dir(train_case, tmp_path, capsys):
    import LSP_train

    argv, previous, ref_run, _ = train_case
    out = shutil.copytree(previous, tmp_path / "out")
    before = visible_files(out)
    with read_only(out):
        rc = LSP_train.main(argv(out))
    assert_clear_error(rc, capsys.readouterr().err, out)
    assert visible_files(out) == before
    run = LSP_train.main(argv(out))
    assert isinstance(run, Path)
    assert_same_run(run, ref_run)


def test_training_disk_full_then_resume(train_case, tmp_path, capsys):
    """Room for the earlier run and the first checkpoint, not the second: the run stops at
    step 4 with a clear error, and --resume latest after freeing space ends as the reference."""
    import LSP_train

    argv, previous, ref_run, ckpt_bytes = train_case
    out = tmp_path / "out"
    prev_bytes = sum(f.stat().st_size for f in previous.rglob("*") if f.is_file())
    with tmpfs(out, (prev_bytes + ckpt_bytes * 11 // 10) // 1024) as resize:
        shutil.copytree(previous, out, dirs_exist_ok=True)
        before = visible_files(out)
        rc = LSP_train.main(argv(out))
        assert_clear_error(rc, capsys.readouterr().err, out)
        assert {k: v for k, v in visible_files(out).items() if k in before} == before
        resize(256 * 1024)
        run = LSP_train.main(argv(out, "--resume", "latest"))
        assert isinstance(run, Path), capsys.readouterr().err
        assert_same_run(run, ref_run)


@pytest.mark.parametrize("code", FAULTS)
def test_training_writes_refused(train_case, tmp_path, capsys, code):
    import LSP_train

    argv, previous, ref_run, _ = train_case
    out = shutil.copytree(previous, tmp_path / "out")
    before = visible_files(out)
    with failing_writes(out, code) as refused:
        rc = LSP_train.main(argv(out))
    assert refused
    assert_clear_error(rc, capsys.readouterr().err, out)
    assert visible_files(out) == before
    run = LSP_train.main(argv(out))
    assert isinstance(run, Path)
    assert_same_run(run, ref_run)


# ---- decode -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decode_case(tmp_path_factory):
    """A tiny random HF model, contexts, and the hypotheses an uninterrupted run writes."""
    import torch

    from lsp_data.tokenizer import load_tokenizer
    from lsp_decode.cli import main
    from lsp_model.loading import load_model, save_hf_folder
    from tests.gpt2_training.conftest import TINY

    root = tmp_path_factory.mktemp("decode_case")
    (root / "cfg").mkdir()
    (root / "cfg" / "config.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    model = save_hf_folder(load_model(str(root / "cfg")), load_tokenizer(), root / "hf")
    contexts = root / "contexts.txt"
    contexts.write_text("hello there EOS how are you\nwhat is new\n", encoding="utf-8")
    ref = root / "ref" / "hyp.txt"
    assert main(decode_argv(model, contexts, ref)) == 0
    return model, contexts, ref.read_bytes()


def decode_argv(model: Path, contexts: Path, output: Path) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--input",
        str(contexts),
        "--output",
        str(output),
        "--max_new_tokens",
        "8",
    ]


def check_decode_failed(rc, err, folder: Path, argv: list[str], ref: bytes) -> None:
    from lsp_decode.cli import main

    assert_clear_error(rc, err, folder)
    assert (folder / "hyp.txt").read_bytes() == b"previous\n"
    assert main(argv) == 0
    assert (folder / "hyp.txt").read_bytes() == ref


def test_decode_read_only_folder(decode_case, tmp_path, capsys):
    from lsp_decode.cli import main

    model, contexts, ref = decode_case
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "hyp.txt").write_text("previous\n")
    argv = decode_argv(model, contexts, folder / "hyp.txt")
    with read_only(folder):
        rc = main(argv)
    check_decode_failed(rc, capsys.readouterr().err, folder, argv, ref)


def test_decode_disk_full(decode_case, tmp_path, capsys):
    from lsp_decode.cli import main

    model, contexts, ref = decode_case
    folder = tmp_path / "out"
    with tmpfs(folder, 1024):
        (folder / "hyp.txt").write_text("previous\n")
        filler = fill(folder)
        argv = decode_argv(model, contexts, folder / "hyp.txt")
        rc = main(argv)
        err = capsys.readouterr().err
        filler.unlink()
        check_decode_failed(rc, err, folder, argv, ref)


@pytest.mark.parametrize("code", FAULTS)
def test_decode_writes_refused(decode_case, tmp_path, capsys, code):
    from lsp_decode.cli import main

    model, contexts, ref = decode_case
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "hyp.txt").write_text("previous\n")
    argv = decode_argv(model, contexts, folder / "hyp.txt")
    with failing_writes(folder, code) as refused:
        rc = main(argv)
    assert refused
    check_decode_failed(rc, capsys.readouterr().err, folder, argv, ref)


# ---- reddit extractor -------------------------------------------------------------------------

MONTH, EARLIER = "2011-02", "2011-01"


@pytest.fixture(scope="module")
def reddit_case(tmp_path_factory):
    """Dumps of two months, an output folder holding the earlier month's extract, and the
    later month's extract as an uninterrupted run writes it."""
    from tests.reddit_extractor import synth
    from tests.reddit_extractor.helpers import run

    root = tmp_path_factory.mktemp("reddit_case")
    inp = root / "in"
    inp.mkdir()
    for seed, month in enumerate((EARLIER, MONTH)):
        synth.write_month(inp, month, *synth.random_month(40, 600, seed=seed), ".zst")
    previous = root / "previous"
    assert (
        run(EARLIER, "--task", "extract", "--reddit_input", inp, "--reddit_output", previous) == 0
    )
    ref = shutil.copytree(previous, root / "ref")
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", ref) == 0
    return inp, previous, visible_files(ref)


def check_extract_failed(rc, err, out: Path, before, inp: Path, ref) -> None:
    from tests.reddit_extractor.helpers import run

    assert_clear_error(rc, err, out)
    assert visible_files(out) == before
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    assert visible_files(out) == ref


def test_extract_read_only_output(reddit_case, tmp_path, capsys):
    from tests.reddit_extractor.helpers import run

    inp, previous, ref = reddit_case
    out = shutil.copytree(previous, tmp_path / "out")
    before = visible_files(out)
    with read_only(out):
        rc = run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out)
    check_extract_failed(rc, capsys.readouterr().err, out, before, inp, ref)


def test_extract_disk_full(reddit_case, tmp_path, capsys):
    from tests.reddit_extractor.helpers import run

    inp, previous, ref = reddit_case
    out = tmp_path / "out"
    with tmpfs(out, 1024):
        shutil.copytree(previous, out, dirs_exist_ok=True)
        before = visible_files(out)
        filler = fill(out, leave=8 * 1024)
        rc = run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out)
        err = capsys.readouterr().err
        filler.unlink()
        check_extract_failed(rc, err, out, before, inp, ref)


@pytest.mark.parametrize("code", FAULTS)
def test_extract_writes_refused(reddit_case, tmp_path, capsys, code):
    from tests.reddit_extractor.helpers import run

    inp, previous, ref = reddit_case
    out = shutil.copytree(previous, tmp_path / "out")
    before = visible_files(out)
    with failing_writes(out, code) as refused:
        rc = run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out)
    assert refused
    check_extract_failed(rc, capsys.readouterr().err, out, before, inp, ref)
