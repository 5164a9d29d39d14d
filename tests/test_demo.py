"""demo.py and its bundled dialogue set (lsp_data/dummy.py): offline, CPU only."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import demo
from lsp_data import dummy
from lsp_data.parsing import parse_training_line

# ----------------------------------------------------------------------------- dummy data


def _write_yml(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A chatterbot-style corpus with every awkward case the loader handles."""
    folder = tmp_path / "english"
    _write_yml(folder, "a.yml", """\
categories: [a]
conversations:
- - Hello
  - Hi there
- - Hello
  - Hi there
- - What year did it end?
  - 1945
- - Is it true?
  - yes
- - just one turn
- a bare string, not a list
- - "Show me code"
  - "Here:\\n\\n```\\nprint(1)\\n\\tx = 2\\n```\\n"
- - say EOS please
  - EOS is a word here
- - One
  - Two
  - Three
  - Four
""")
    _write_yml(folder, "b.yml", """\
categories: [b]
conversations:
- - Hello
  - Hi there
""" + "".join(f"- - question {i}\n  - answer {i}\n" for i in range(20)))
    return folder


def test_load_conversations_counts_and_cleans(tiny_corpus: Path) -> None:
    stats = dummy.DummyDataStats()
    convs = dummy.load_conversations(tiny_corpus, stats)
    assert stats.files == 2
    assert stats.conversations_read == 9 + 21
    assert stats.duplicates == 2  # "Hello / Hi there" thrice
    assert stats.skipped == {"with a bool turn": 1, "with fewer than 2 turns": 1,
                             "not a list of turns": 1}
    assert stats.converted_turns == 1
    assert stats.conversations_kept == len(convs) == 30 - 2 - 3
    assert ["What year did it end?", "1945"] in convs
    assert ["Show me code", "Here: ``` print(1) x = 2 ```"] in convs
    assert ["say eos please", "eos is a word here"] in convs
    assert ["One", "Two", "Three", "Four"] in convs
    for conv in convs:
        for turn in conv:
            assert turn and turn == " ".join(turn.split()) and "\t" not in turn


def test_split_is_deterministic_disjoint_and_order_free(tiny_corpus: Path) -> None:
    convs = dummy.load_conversations(tiny_corpus)
    train, valid = dummy.split_conversations(convs, 0.1)
    assert len(valid) == 3 and len(train) == len(convs) - 3
    assert not {tuple(c) for c in train} & {tuple(c) for c in valid}
    train2, valid2 = dummy.split_conversations(list(reversed(convs)), 0.1)
    assert sorted(map(tuple, valid2)) == sorted(map(tuple, valid))
    with pytest.raises(ValueError):
        dummy.split_conversations(convs, 1.0)


def test_line_formats() -> None:
    turns = ["a b", "c", "d e f"]
    assert dummy.training_line(turns) == "1.0 a b EOS 1.0 c\t1.0 d e f"
    assert dummy.validation_pairs(turns) == ["a b\tc", "a b EOS c\td e f"]
    weights, texts = parse_training_line(dummy.training_line(turns))
    assert weights == [1.0, 1.0, 1.0] and texts == turns


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_write_dummy_data_from_the_package(tmp_path: Path) -> None:
    train, valid = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    stats = dummy.write_dummy_data(train, valid)
    train_lines, valid_lines = _read(train), _read(valid)
    assert len(train_lines) == stats.train_lines == stats.train_conversations > 500
    assert len(valid_lines) == stats.valid_pairs >= stats.valid_conversations
    kept = stats.train_conversations + stats.valid_conversations
    assert kept == stats.conversations_kept
    assert stats.valid_conversations == -(-kept // 10)  # ceil(10%)

    train_convs = set()
    for line in train_lines:
        context, response = line.split("\t")
        turns = context.split(" EOS ") + [response]
        assert all(t.startswith("1.0 ") and len(t) > 4 for t in turns), line
        train_convs.add(tuple(t[4:] for t in turns))
    # Rebuild the held-out conversations: the pair with the longest context holds them whole.
    valid_convs: dict[str, tuple[str, ...]] = {}
    for line in valid_lines:
        fields = line.split("\t")
        assert len(fields) == 2 and all(fields), line
        turns = tuple(fields[0].split(" EOS ")) + (fields[1],)
        assert not turns[0].startswith("1.0 ")
        if len(turns) > len(valid_convs.get(turns[0], ())):
            valid_convs[turns[0]] = turns
    assert not train_convs & set(valid_convs.values())
    assert f"{stats.valid_pairs} pairs" in stats.summary()

    # Same files again: the split does not depend on anything but the corpus.
    dummy.write_dummy_data(tmp_path / "t2.tsv", tmp_path / "v2.tsv")
    assert _read(tmp_path / "t2.tsv") == train_lines and _read(tmp_path / "v2.tsv") == valid_lines
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dummy.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(dummy.DummyDataError, match="pip install -r requirements.txt"):
        dummy.corpus_folder()


# ----------------------------------------------------------------------------- demo pieces


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_auto_model_is_tiny_without_a_local_copy(tmp_path: Path, offline_hub: Path) -> None:
    choice = demo.choose_model("auto", tmp_path / "models")
    assert choice.kind == "tiny" and not choice.pretrained
    assert Path(choice.name_or_path).resolve() == demo.TINY_CONFIG
    assert "HF_HUB_OFFLINE is set" in choice.why  # the probe was not even tried
    assert "hf download microsoft/DialoGPT-small --local-dir" in choice.why


CHOOSE = """
import json, sys
import demo
choice = demo.choose_model("auto", demo.Path(sys.argv[1]))
print(json.dumps({"kind": choice.kind, "name": choice.name_or_path, "why": choice.why}))
"""


def test_auto_model_downloads_dialogpt_small_when_the_hub_answers(tmp_path: Path) -> None:
    """The real download path, against tests/fakehub.py serving a tiny model as DialoGPT-small."""
    import torch

    from lsp_model import GPT2Config, GPT2LMHeadModel, load_tokenizer
    from lsp_model.loading import save_hf_folder
    from tests.fakehub import hub_env, serve_repo

    torch.manual_seed(0)
    tiny = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32))
    save_hf_folder(tiny, load_tokenizer(), tmp_path / "repo")
    cache = tmp_path / "cache"

    def choose(endpoint: str, **env: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", CHOOSE, str(tmp_path / "models")],
                              env={**hub_env(endpoint, cache), "PYTHONPATH": str(demo.REPO), **env},
                              cwd=demo.REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with serve_repo(demo.HUB_NAMES["small"], tmp_path / "repo") as hub:
        first = choose(hub.endpoint)
        assert first["kind"] == "small" and "downloaded it" in first["why"], first
        assert any("/resolve/" in r and r.endswith("/model.safetensors") for r in hub.requests)
    # Later runs find it in the cache, also with the hub gone and offline mode on.
    again = choose(hub.endpoint, HF_HUB_OFFLINE="1")
    assert again["kind"] == "small" and "Hugging Face cache" in again["why"], again


def test_auto_model_falls_back_when_the_download_fails(tmp_path: Path, offline_hub: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import lsp_model.loading as loading

    def broken_download(name):
        raise loading.ModelLoadError(f"cannot load model '{name}': connection reset")

    monkeypatch.setattr(loading, "hub_reachable", lambda name, timeout: (True, ""))
    monkeypatch.setattr(loading, "resolve_model_source", broken_download)
    choice = demo.choose_model("auto", tmp_path / "models")
    assert choice.kind == "tiny" and "connection reset" in choice.why


def test_auto_model_takes_a_local_dialogpt_small(tmp_path: Path, offline_hub: Path) -> None:
    folder = tmp_path / "models" / "DialoGPT-small"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert demo.choose_model("auto", tmp_path / "models").kind == "tiny"  # no weights yet
    (folder / "model.safetensors").write_bytes(b"")
    choice = demo.choose_model("auto", tmp_path / "models")
    assert choice.kind == "small" and choice.pretrained
    assert Path(choice.name_or_path).resolve() == folder.resolve()


def test_pretrained_model_unavailable_offline_exits_2(
        tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = demo.main(["--model", "small", "--model_dir", str(tmp_path / "none"),
                        "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert "microsoft/DialoGPT-small" in err and "HF_HUB_OFFLINE" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--num_optim_steps", "0"], "--num_optim_steps must be at least 1"),
    (["--learning_rate", "0"], "--learning_rate must be positive"),
    (["--output_dir", "{file}"], "exists and is not a folder"),
])
def test_bad_options_exit_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], message: str) -> None:
    (tmp_path / "a_file").write_text("")
    extra = [e.format(file=tmp_path / "a_file") for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--output_dir", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_reddit_data_without_dumps_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    months = demo.read_months(demo.REPO / "configs" / "reddit" / "train.small.txt")
    (dumps / f"RS_{months[0]}.zst").write_bytes(b"")  # one present: not reported missing
    status = demo.main(["--data", "small", "--model", "tiny", "--reddit_dumps", str(dumps),
                        "--output_dir", str(tmp_path / "out")])
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
    n_train, n_valid = demo.split_reddit(extracted, tmp_path / "train.tsv",
                                         tmp_path / "valid.tsv", max_valid=4)
    train, valid = _read(tmp_path / "train.tsv"), _read(tmp_path / "valid.tsv")
    # Every 10th line (40 lines, at most 4 pairs); line 10 has no target, so it stays.
    assert (n_train, n_valid) == (len(train), len(valid)) == (37, 3)
    assert valid == ["hi 19 EOS so 19\treply 19", "hi 29 EOS so 29\treply 29",
                     "hi 39 EOS so 39\treply 39"]
    assert lines[9] in train
    assert not set(train) & {lines[i] for i in (19, 29, 39)}


def test_stream_to_log_keeps_final_progress_state(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "output.log"
    code = ("import sys; sys.stdout.write('start\\n10%\\r50%\\r100%\\ndone ü\\n'); "
            "sys.stderr.write('warn\\n'); sys.exit(3)")
    assert demo.stream_to_log([sys.executable, "-c", code], log) == 3
    assert "10%\r50%\r100%" in capsys.readouterr().out
    assert log.read_text(encoding="utf-8").splitlines() == ["start", "100%", "done ü", "warn"]


def test_train_command_parses_and_passes_extra_flags(tmp_path: Path) -> None:
    from gpt2_training.args import build_parser

    args = demo.build_parser().parse_args(["--num_optim_steps", "40"])
    model = demo.ModelChoice("tiny", "configs/tiny", "", pretrained=False)
    cmd = demo.train_command(args, model, tmp_path / "train.128len.db", tmp_path / "valid.tsv",
                             tmp_path / "models", ["--tensorboard", "true"])
    assert Path(cmd[1]).name == "LSP_train.py"
    parsed = build_parser().parse_args(shlex.split(shlex.join(cmd))[2:])
    assert parsed.num_optim_steps == 40 and parsed.valid_step == 4
    assert parsed.fp16 is False or parsed.fp16 is True
    assert parsed.learning_rate == demo.TINY_SETTINGS["learning_rate"]
    assert parsed.gradient_accumulation_steps == 1 and parsed.tensorboard is True


# ----------------------------------------------------------------------------- end to end


def _printed_command(out: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if "LSP_train.py --model_name_or_path" in ln)
    return shlex.split(line)


@pytest.mark.slow
def test_demo_end_to_end_and_rerun(tmp_path: Path, offline_hub: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "demo"
    argv = ["--model", "auto", "--model_dir", str(tmp_path / "models"), "--output_dir",
            str(out_dir), "--num_optim_steps", "16", "--valid_step", "4"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "model: tiny" in out and "chatterbot-corpus" in out

    # Data and database.
    data = out_dir / "data" / "dummy"
    assert (data / "train.tsv").is_file() and (data / "valid.tsv").is_file()
    db = data / "train.128len.db"
    assert (db / "meta.json").is_file() and (db / "db.sqlite").is_file()

    # The printed command is the one that ran, and parses as LSP_train.py arguments.
    cmd = _printed_command(out)
    assert Path(cmd[1]).name == "LSP_train.py"
    assert cmd[cmd.index("--train_input_file") + 1].endswith("train.128len.db")
    assert cmd[cmd.index("--fp16") + 1] in ("true", "false")

    # Run folder: logs, state dict, HF folder, resumable checkpoints.
    runs = [p for p in (out_dir / "models").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    with open(run / "train_log.txt", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "global_step", "step", "mean_loss", "mean_ppl", "n_token_real",
                       "n_token_total", "epoch_time"]
    assert [int(r[1]) for r in rows[1:]] == list(range(1, 17))
    with open(run / "eval_log.txt", newline="") as f:
        evals = list(csv.DictReader(f))
    assert [int(r["global_step"]) for r in evals] == [4, 8, 12, 16]
    assert float(evals[-1]["eval_ppl"]) < float(evals[0]["eval_ppl"])
    from lsp_model.loading import load_model, load_state_dict_file

    sd = load_state_dict_file(run / "GP2-pretrain-step-16.pkl")
    assert "transformer.wte.weight" in sd
    assert load_model(run / "hf_model").config.n_layer == 2
    assert any((run / "checkpoints").iterdir())

    # output.log: the training output, one line per log line.
    log = (out_dir / "output.log").read_text(encoding="utf-8")
    assert log.startswith(f"$ {shlex.join(cmd)}\n")
    assert "step 16: validation loss" in log and "done: 16 optimizer steps" in log
    assert "validation perplexity" in out

    # The sample conversation: three user turns, three non-empty replies.
    sample = (out_dir / "sample_conversation.txt").read_text(encoding="utf-8")
    users = [ln for ln in sample.splitlines() if ln.startswith("USER: ")]
    bots = [ln for ln in sample.splitlines() if ln.startswith("BOT:  ")]
    assert len(users) == len(bots) == 3
    assert all(len(b) > len("BOT:  ") for b in bots)  # an empty reply is said to be empty
    assert sample in out

    # A rerun reuses every finished step and trains nothing.
    log_before = (out_dir / "output.log").stat().st_mtime_ns
    assert demo.main(argv) == 0
    out2 = capsys.readouterr().out
    assert out2.count("reusing") == 3
    assert "reusing the finished run" in out2 and "--force" in out2
    assert [p for p in (out_dir / "models").iterdir() if p.is_dir()] == runs
    assert (out_dir / "output.log").stat().st_mtime_ns == log_before

    # A different command trains again (no reuse of a run made with other settings).
    marker = out_dir / "training.json"
    assert demo.finished_run(marker, cmd) == run.resolve()
    assert demo.finished_run(marker, cmd[:-2] + ["--pbar", "true"]) == run.resolve()
    other = list(cmd)
    other[other.index("--seed") + 1] = "7"
    assert demo.finished_run(marker, other) is None


@pytest.mark.slow
def test_demo_reddit_small_on_synthetic_dumps(tmp_path: Path, offline_hub: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--data small drives make over every month of the list, then holds out validation."""
    if demo.shutil.which("make") is None:
        pytest.skip("make is not installed")
    from tests.reddit_extractor.synth import random_month, write_month

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    months = demo.read_months(demo.REPO / "configs" / "reddit" / "train.small.txt")
    for i, month in enumerate(months):
        write_month(str(dumps), month, *random_month(8, 60, seed=i), ext=".gz")
    out_dir = tmp_path / "out"
    repo_work = demo.REPO / "reddit_extractor" / "data"
    existed = repo_work.exists()
    argv = ["--data", "small", "--model", "tiny", "--reddit_dumps", str(dumps), "--output_dir",
            str(out_dir), "--num_optim_steps", "2", "--valid_step", "1", "--jobs", "2"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "make -C" in out and "SIZE=small" in out
    data = out_dir / "data" / "small"
    train, valid = _read(data / "train.tsv"), _read(data / "valid.tsv")
    assert train and valid and len(valid) <= len(train) // 9 + 1
    for line in train:
        context, response = line.split("\t")
        assert response.startswith(("1.0 ", "0.0 "))
    for line in valid:
        assert len(line.split("\t")) == 2 and not line.startswith(("1.0 ", "0.0 "))
    assert not (data / "extracted" / "train.tsv").exists()  # the full copy is not kept
    assert (out_dir / "data" / "reddit_work" / "train" / "conv").is_dir()
    assert repo_work.exists() == existed  # the extractor's own work folder is left alone

    assert demo.main(argv) == 0
    assert "reusing" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_fine_tunes_a_local_pretrained_copy(tmp_path: Path, offline_hub: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--model auto takes MODEL_DIR/DialoGPT-small (here: tiny weights in HF layout)."""
    from lsp_model.loading import load_model, save_hf_folder
    from lsp_model.tokenizer import load_tokenizer

    folder = tmp_path / "models" / "DialoGPT-small"
    save_hf_folder(load_model(demo.TINY_CONFIG), load_tokenizer(None), folder)
    out_dir = tmp_path / "out"
    argv = ["--model_dir", str(tmp_path / "models"), "--output_dir", str(out_dir),
            "--num_optim_steps", "6", "--learning_rate", "1e-3", "--", "--eval_batch_size", "16"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "model: small" in out and "local copy" in out
    cmd = _printed_command(out)
    assert Path(cmd[cmd.index("--model_name_or_path") + 1]).resolve() == folder.resolve()
    assert demo._flag(cmd, "--train_batch_size") == str(demo.PRETRAINED_SETTINGS["train_batch_size"])
    assert demo._flag(cmd, "--valid_step") == "2"  # a third of the steps
    assert demo._flag(cmd, "--eval_batch_size") == "16"  # the flag after -- wins
    run = next(p for p in (out_dir / "models").iterdir() if p.is_dir())
    assert (run / "GP2-pretrain-step-6.pkl").is_file()
