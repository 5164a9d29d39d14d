"""SIGKILL at seeded random points of prepro, the extractor (extract and conv), training and
dstc scoring; then the rerun (or ``--resume latest``) must give exactly what an uninterrupted
run gives, and nothing the killed run left may look complete when it is not (issue 14, 1).

Each stage's uninterrupted run is made once per module and timed; the kill delays are spread
over that time (harness.kill_delays), so start-up, the work and the final writes all get hit.
``FAULTS_SOAK=1`` raises the kill points per stage from 3 to 20, ``FAULTS_SEED`` varies them.
"""

from __future__ import annotations

import glob
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_corpus
from tests.faults.harness import (
    KILLS_PER_STAGE,
    REPO,
    TALLY,
    bytes_under,
    hidden_entries,
    kill_at_point,
    kill_delays,
    python,
    run_killed,
    run_ok,
    session_members,
    stage_rng,
    visible_files,
)

pytestmark = pytest.mark.slow
POINTS = range(KILLS_PER_STAGE)


def tally(stage: str, landed: bool, what: str) -> None:
    TALLY[stage]["tried"] += 1
    TALLY[stage][what if landed else "ended before the kill"] += 1


# ---- prepro ---------------------------------------------------------------------------------

PREPRO_ARGS = ("--max_seq_len", "64", "--chunk_size", "50", "--workers", "2", "--no_pbar")


def db_features(folder: Path) -> tuple[dict, list[dict]]:
    from lsp_data.db import FeatureDB

    with FeatureDB(folder) as db:
        meta = {k: v for k, v in db.meta.items() if k != "corpus"}
        return meta, list(db.iter_features())


def assert_same_db(folder: Path, reference: tuple[dict, list[dict]]) -> None:
    meta, features = db_features(folder)
    ref_meta, ref_features = reference
    assert meta == ref_meta
    assert len(features) == len(ref_features)
    for got, want in zip(features, ref_features):
        assert got.keys() == want.keys()
        for name in want:
            assert np.array_equal(got[name], want[name]), (want["conv_id"], name)


@pytest.fixture(scope="module")
def prepro_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepro_ref")
    corpus = write_corpus(root / "train.tsv", 2000, seed=5)
    db = root / "train.64len.db"
    _, seconds = run_ok(python(REPO / "prepro.py", "--corpus", corpus, *PREPRO_ARGS), output=db)
    return corpus, db_features(db), seconds, bytes_under(f"{db}/db.sqlite*")


@pytest.mark.parametrize("point", POINTS)
def test_prepro_killed_then_rerun(prepro_reference, tmp_path, point):
    """Even points kill after a seeded delay, odd ones once the database being built holds a
    seeded share of its final size."""
    corpus, reference, seconds, db_bytes = prepro_reference
    shutil.copy(corpus, tmp_path / "train.tsv")
    db = tmp_path / "train.64len.db"
    cmd = python(REPO / "prepro.py", "--corpus", tmp_path / "train.tsv", *PREPRO_ARGS)
    log = tmp_path / "killed.err"
    patterns = (f"{tmp_path}/.{db.name}.tmp-*/db.sqlite*", f"{db}/db.sqlite*")
    killed = kill_at_point(
        "prepro",
        point,
        cmd,
        seconds=seconds,
        total_bytes=db_bytes,
        patterns=patterns,
        log=log,
        grace=0.2,
    )
    # (whether its workers outlive it: test_prepro_workers_die_with_it)
    # What the kill left: the database under its final name is whole, or there is none.
    complete = db.exists()
    tally("prepro", killed.landed, "db complete at kill" if complete else "killed mid-run")
    if complete:
        assert_same_db(db, reference)
    else:
        run_ok(cmd)
        assert_same_db(db, reference)


def test_prepro_workers_die_with_it(prepro_reference, tmp_path):
    corpus = shutil.copy(prepro_reference[0], tmp_path / "train.tsv")
    cmd = python(REPO / "prepro.py", "--corpus", corpus, *PREPRO_ARGS)

    def workers_running(pid: int) -> bool:
        return len(session_members(pid)) >= 3  # prepro and its two workers

    killed = run_killed(cmd, when=workers_running, log=tmp_path / "killed.err")
    assert killed.landed
    tally("prepro (workers)", killed.landed, "killed with workers running")
    assert killed.survivors == [], f"worker processes outlived prepro: {killed.survivors}"


# ---- reddit extractor -------------------------------------------------------------------------

MONTH = "2011-01"
REDDIT = REPO / "reddit_extractor" / "src" / "reddit.py"
CONV_ARGS = ("--clean", "True", "--min_score", "1", "--min_depth", "2", "--max_depth", "5")


def extract_cmd(inp: Path, out: Path) -> list[str]:
    return python(REDDIT, MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out)


def conv_cmd(out: Path) -> list[str]:
    return python(REDDIT, MONTH, "--task", "conv", "--reddit_output", out, *CONV_ARGS)


@pytest.fixture(scope="module")
def reddit_reference(tmp_path_factory):
    from tests.reddit_extractor import synth

    root = tmp_path_factory.mktemp("reddit_ref")
    inp = root / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, *synth.random_month(200, 12000, seed=14), ".zst")
    out = root / "out"
    _, extract_seconds = run_ok(extract_cmd(inp, out), output=out / "extract" / MONTH)
    _, conv_seconds = run_ok(conv_cmd(out), output=out / "conv" / f"{MONTH}.stat.tsv")
    return {
        "extract_bytes": bytes_under(f"{out}/extract/{MONTH}/*"),
        "conv_bytes": bytes_under(f"{out}/conv/*"),
        "inp": inp,
        "out": out,
        "extract": visible_files(out / "extract"),
        "conv": visible_files(out / "conv"),
        "extract_seconds": extract_seconds,
        "conv_seconds": conv_seconds,
    }


@pytest.mark.parametrize("point", POINTS)
def test_extract_killed_then_rerun(reddit_reference, tmp_path, point):
    """Even points kill after a seeded delay, odd ones once the work folder holds a seeded
    share of the month's output."""
    ref = reddit_reference
    out = tmp_path / "out"
    cmd, log = extract_cmd(ref["inp"], out), tmp_path / "killed.err"
    killed = kill_at_point(
        "extract",
        point,
        cmd,
        seconds=ref["extract_seconds"],
        total_bytes=ref["extract_bytes"],
        patterns=(f"{out}/extract/.{MONTH}.*.tmp/*", f"{out}/extract/{MONTH}/*"),
        log=log,
    )
    assert killed.survivors == []
    month = out / "extract" / MONTH
    # the month folder appears only when complete: then it is the reference, byte for byte
    if month.exists():
        assert visible_files(out / "extract") == ref["extract"]
    else:
        assert visible_files(out) == {}
    tally("extract", killed.landed, "complete at kill" if month.exists() else "killed mid-run")
    run_ok(extract_cmd(ref["inp"], out))
    assert visible_files(out / "extract") == ref["extract"]
    assert hidden_entries(out) == []  # the rerun cleared what the killed run left


@pytest.mark.parametrize("point", POINTS)
def test_conv_killed_then_rerun(reddit_reference, tmp_path, point):
    """Even points kill after a seeded delay, odd ones once the work folder holds a seeded
    share of the month's output."""
    from reddit_extractor.conv import conv_complete

    ref = reddit_reference
    out = tmp_path / "out"
    shutil.copytree(ref["out"] / "extract", out / "extract")
    cmd, log = conv_cmd(out), tmp_path / "killed.err"
    killed = kill_at_point(
        "conv",
        point,
        cmd,
        seconds=ref["conv_seconds"],
        total_bytes=ref["conv_bytes"],
        patterns=(f"{out}/conv/.{MONTH}.*.tmp/*", f"{out}/conv/{MONTH}*"),
        log=log,
    )
    assert killed.survivors == []
    left = visible_files(out / "conv") if (out / "conv").exists() else {}
    # Files are renamed into place whole, so each one there is the reference's; the set counts
    # as complete only with its marker, and then all of it is there.
    assert all(ref["conv"][name] == data for name, data in left.items())
    if conv_complete(str(out), MONTH):
        assert left == ref["conv"]
    tally("conv", killed.landed, "complete at kill" if left == ref["conv"] else "killed mid-run")
    run_ok(conv_cmd(out))
    assert visible_files(out / "conv") == ref["conv"]
    assert hidden_entries(out / "conv") == []


# ---- dstc scoring -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dstc_reference(tmp_path_factory):
    """Hypotheses and two references of 4000 random lines (about a second of NIST/BLEU)."""
    root = tmp_path_factory.mktemp("dstc_ref")
    words = "the cat sat on a mat and then it ran off to see what you were doing today".split()
    rng = random.Random(7)
    for name in ("hyp.txt", "ref0.txt", "ref1.txt"):
        lines = (" ".join(rng.choices(words, k=rng.randint(1, 15))) for _ in range(4000))
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = root / "out" / "report.tsv"
    stdout, seconds = run_ok(dstc_cmd(root, report), output=report)
    return root, report.read_bytes(), stdout, seconds


def dstc_cmd(root: Path, report: Path, meteor: bool = False) -> list[str]:
    return python(
        "-m",
        "dstc.dstc",
        root / "hyp.txt",
        "--ref_files",
        root / "ref0.txt",
        root / "ref1.txt",
        "--report",
        report,
        "--json",
        *(() if meteor else ("--no_meteor",)),
    )


@pytest.mark.parametrize("point", POINTS)
def test_dstc_killed_then_rerun(dstc_reference, tmp_path, point):
    root, ref_report, ref_stdout, seconds = dstc_reference
    report = tmp_path / "report.tsv"
    delay = kill_delays("dstc", seconds * 1.1)[point]
    killed = run_killed(dstc_cmd(root, report), delay=delay, log=tmp_path / "killed.err")
    assert killed.survivors == []
    if report.exists():
        assert report.read_bytes() == ref_report
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("report")] in (
        [],
        ["report.tsv"],
    )
    tally("dstc", killed.landed, "report complete at kill" if report.exists() else "killed mid-run")
    stdout, _ = run_ok(dstc_cmd(root, report))
    assert report.read_bytes() == ref_report
    assert stdout.splitlines()[-1] == ref_stdout.splitlines()[-1]  # the --json line


def test_dstc_killed_while_meteor_runs_leaves_no_java(dstc_reference, tmp_path):
    """METEOR runs in a Java child process: killing the scorer must not leave it running."""
    if shutil.which("java") is None:
        pytest.skip("METEOR needs a Java runtime (e.g. openjdk-17-jre-headless)")
    root = dstc_reference[0]
    report = tmp_path / "report.tsv"

    def java_started(pid: int) -> bool:
        # the scorer's own session: itself plus, once METEOR starts, the JVM
        return len(session_members(pid)) > 1

    killed = run_killed(
        dstc_cmd(root, report, meteor=True),
        when=java_started,
        log=tmp_path / "killed.err",
        grace=10,
    )
    assert killed.landed, killed.stderr
    assert killed.survivors == [], "the METEOR JVM outlived the killed scorer"
    assert not report.exists()
    tally("dstc (METEOR)", killed.landed, "killed with the JVM running")


# ---- training ---------------------------------------------------------------------------------

TRAIN_STEPS = 12


def train_cmd(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    from tests.gpt2_training.conftest import train_argv

    argv = train_argv(data, out, "--num_optim_steps", str(TRAIN_STEPS), "--valid_step", "6")
    argv += ["--save_step", "3", "--keep_checkpoints", "2", *extra]
    argv[argv.index("--gradient_accumulation_steps") + 1] = "1"
    return python(REPO / "LSP_train.py", *argv)


def log_rows(path: Path) -> list[list[str]]:
    """A csv log's whole rows (a killed run may leave a torn last line), timing columns left
    out: they differ from run to run."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    keep = [i for i, name in enumerate(header) if "time" not in name]
    return [
        [cells[i] for i in keep]
        for cells in (line.rstrip("\n").split(",") for line in lines[1:] if line.endswith("\n"))
    ]


def train_rows(run: Path) -> list[list[str]]:
    return log_rows(run / "train_log.txt")


def state_dict(path: Path) -> dict:
    from lsp_model.loading import load_state_dict_file

    return load_state_dict_file(path)


def assert_same_weights(got: dict, want: dict) -> None:
    import torch

    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    from tests.gpt2_training.conftest import make_train_data

    root = tmp_path_factory.mktemp("train_ref")
    data = make_train_data(root, 400, 150, "hello there EOS how are you\tfine thanks\n")
    final = root / "out" / "*" / "hf_model" / "model.safetensors"
    _, seconds = run_ok(train_cmd(data, root / "out"), output=final)
    (run,) = (root / "out").iterdir()
    return data, run, seconds


# What a save writes under a hidden temporary name, by kind (the name without the leading dot,
# step numbers and the random tag): a checkpoint folder, the published weights, hf_model/.
SAVE_KINDS = ("step", "GP2-pretrain-step.pkl", "hf_model")


def temp_kind(path: Path) -> str:
    return re.sub(r"^\.|\.tmp-\w+$|-\d+", "", path.name)


def temp_entries(out: Path) -> set[Path]:
    return {p for p in hidden_entries(out) if ".tmp-" in p.name}


@pytest.mark.parametrize("point", POINTS)
def test_training_killed_then_resumed(train_reference, tmp_path, point):
    """Kill points in turn: after a seeded delay; once train_log.txt has a seeded number of
    rows; while a save is being written (a checkpoint folder, the .pkl weights, hf_model/ in
    turn; the seeded n-th such save), i.e. once its hidden temporary appears."""
    import torch

    from gpt2_training.checkpoint import list_checkpoints, load_checkpoint

    data, ref_run, seconds = train_reference
    out = tmp_path / "out"
    rng = stage_rng(f"training:{point}")
    if point % 3 == 2:
        kind = SAVE_KINDS[(point // 3) % len(SAVE_KINDS)]
        # 12 steps: checkpoints at 3, 6, 9, 12 (a later one, so that a complete one is there
        # to resume from); weights at 6 and 12
        nth = rng.randint(2, 3) if kind == "step" else rng.randint(1, 2)
        seen: set[Path] = set()

        def saving(pid: int) -> bool:
            if out.exists():
                seen.update(p for p in temp_entries(out) if temp_kind(p) == kind)
            return len(seen) >= nth

        killed = run_killed(train_cmd(data, out), when=saving, log=tmp_path / "killed.err")
        assert killed.landed, f"fewer than {nth} saves of {kind} seen"
        what = f"killed writing {kind} #{nth}"
    elif point % 3 == 1:
        rows = rng.randint(1, TRAIN_STEPS - 1)

        def trained(pid: int) -> bool:
            logs = glob.glob(f"{out}/*/train_log.txt")
            return bool(logs) and Path(logs[0]).read_bytes().count(b"\n") > rows

        killed = run_killed(train_cmd(data, out), when=trained, log=tmp_path / "killed.err")
        assert killed.landed, f"train_log.txt never reached {rows} rows"
        what = f"killed after {rows} steps"
    else:
        delay = kill_delays("training", seconds * 1.1)[point]
        killed = run_killed(train_cmd(data, out), delay=delay, log=tmp_path / "killed.err")
        what = "killed after a delay"
    assert killed.survivors == []
    runs = list(out.iterdir()) if out.exists() else []
    run = runs[0] if runs else None
    ref_rows = train_rows(ref_run)

    # Before any rerun: what is visible is complete and is what the uninterrupted run wrote.
    if run is not None:
        for pkl in run.glob("GP2-pretrain-step-*.pkl"):
            assert_same_weights(state_dict(pkl), state_dict(ref_run / pkl.name))
        for ckpt in list_checkpoints(run):
            state = load_checkpoint(ckpt)  # verifies size and SHA-256
            assert state["global_step"] == int(ckpt.name.split("-")[1])
        if (run / "hf_model").exists():  # the weights of one of the (verified) .pkl files
            hf = state_dict(run / "hf_model" / "model.safetensors")
            pkls = [state_dict(p) for p in run.glob("GP2-pretrain-step-*.pkl")]
            assert any(all(torch.equal(t, pkl[k]) for k, t in hf.items()) for pkl in pkls)
        for name in ("train_log.txt", "eval_log.txt"):
            if (run / name).exists():
                rows = log_rows(run / name)
                assert rows == log_rows(ref_run / name)[: len(rows)], name
        if (run / "args.json").exists():
            json.loads((run / "args.json").read_text())

    if run is not None and list_checkpoints(run):
        run_ok(train_cmd(data, out, "--resume", "latest"))
        assert list(out.iterdir()) == [run]  # continued in the same run folder
        what += ", resumed"
    else:  # killed before the first checkpoint: start again
        before = set(runs)
        run_ok(train_cmd(data, out))
        (run,) = set(out.iterdir()) - before
        what += ", rerun"
    tally("training", killed.landed, what)
    assert train_rows(run) == ref_rows  # loss sequence, step for step
    assert log_rows(run / "eval_log.txt") == log_rows(ref_run / "eval_log.txt")
    final = f"GP2-pretrain-step-{TRAIN_STEPS}.pkl"
    assert_same_weights(state_dict(run / final), state_dict(ref_run / final))
    assert visible_files(run / "hf_model") == visible_files(ref_run / "hf_model")


def test_training_resume_removes_weights_temporaries(train_reference, tmp_path):
    data, ref_run, _ = train_reference
    out = tmp_path / "out"

    def writing_weights(pid: int) -> bool:
        return bool(glob.glob(f"{out}/*/.GP2-pretrain-step-*.pkl.tmp-*"))

    killed = run_killed(train_cmd(data, out), when=writing_weights, log=tmp_path / "killed.err")
    assert killed.landed
    tally("training (weights temporaries)", killed.landed, "killed writing a .pkl")
    (run,) = out.iterdir()
    run_ok(train_cmd(data, out, "--resume", "latest"))
    assert train_rows(run) == train_rows(ref_run)
    assert hidden_entries(run) == []
