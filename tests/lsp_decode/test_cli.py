"""decode.py (lsp_decode.cli): hypotheses for a test file, greedy / beam / MMI reranking, bad input."""

from __future__ import annotations

import pytest

from lsp_data.tokenizer import load_tokenizer
from lsp_decode import cli as decode
from lsp_model.decoding import generate_replies
from lsp_model.loading import load_model, save_hf_folder
from lsp_model.mmi import backward_scores
from tests.conftest import main_in_child
from tests.gpt2_training.conftest import TINY


def io_args(model, src, out, *extra) -> list[str]:
    """decode.py's command line for ``model`` reading ``src`` and writing ``out``."""
    return ["--model_name_or_path", str(model), "--input", str(src), "--output", str(out), *extra]


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    import json

    import torch

    root = tmp_path_factory.mktemp("decode")
    (root / "cfg").mkdir()
    (root / "cfg" / "config.json").write_text(
        json.dumps({**TINY, "n_positions": 128, "n_ctx": 128})
    )
    torch.manual_seed(0)
    model = load_model(str(root / "cfg"))
    return save_hf_folder(model, load_tokenizer(), root / "hf")


def test_greedy_and_beam_write_one_line_per_context(hf_model, tmp_path):
    src = tmp_path / "test.tsv"
    src.write_text("0.0 hello there EOS 1.0 how are you ?\t1.0|fine\nwhat is up\nthird one\n")
    out = tmp_path / "hyp.txt"
    assert decode.main(io_args(hf_model, src, out, "--max_new_tokens", "6")) == 0
    greedy = out.read_text().splitlines()
    # the replies generate_replies gives for the contexts read by hand (weights dropped)
    model, tokenizer = load_model(str(hf_model)).eval(), load_tokenizer(hf_model)
    contexts = [["hello there", "how are you ?"], ["what is up"], ["third one"]]

    def expected(**options):
        replies = generate_replies(model, tokenizer, contexts, max_new_tokens=6, **options)
        return [" ".join(r.split()) for r in replies]

    assert greedy == expected() and len(greedy) == 3
    assert decode.main(io_args(hf_model, src, out, "--max_new_tokens", "6")) == 0
    assert out.read_text().splitlines() == greedy  # deterministic
    assert (
        decode.main(io_args(hf_model, src, out, "--max_new_tokens", "6", "--batch_size", "1")) == 0
    )
    assert out.read_text().splitlines() == greedy  # batching does not change greedy replies
    assert (
        decode.main(
            io_args(
                hf_model,
                src,
                out,
                "--method",
                "beam",
                "--num_beams",
                "3",
                "--max_new_tokens",
                "6",
            )
        )
        == 0
    )
    assert out.read_text().splitlines() == expected(method="beam", num_beams=3)


def test_contexts_drop_weights_and_refs(tmp_path):
    src = tmp_path / "t.tsv"
    src.write_text("0.0 2 dogs EOS 1.0 cats\tref\n2 dogs\n")
    assert decode.read_contexts(str(src)) == [["2 dogs", "cats"], ["2 dogs"]]
    src.write_text("a EOS  EOS b\n")
    with pytest.raises(ValueError, match="t.tsv:1: an empty turn"):
        decode.read_contexts(str(src))


def test_mmi_prefers_replies_that_predict_the_context(hf_model, tmp_path):
    model = load_model(str(hf_model))
    tok = load_tokenizer()
    scores = backward_scores(model, tok, ["good morning", "hello there"], ["hi", "hey you"])
    # direct computation for "hi": input hi<eos>hello there<eos>good morning<eos>,
    # log-probabilities of every context token and eos, averaged
    import torch

    reply = tok.encode("hi")
    source = tok.encode("hello there") + [50256] + tok.encode("good morning") + [50256]
    ids = torch.tensor([reply + [50256] + source])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0], dim=-1)
    start = len(reply)  # position of the eos after the reply predicts source[0]
    expected = sum(logp[start + i, t].item() for i, t in enumerate(source)) / len(source)
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert scores[0] != scores[1]
    src = tmp_path / "t.tsv"
    src.write_text("hello there\n")
    out = tmp_path / "hyp.txt"
    assert (
        decode.main(
            io_args(
                hf_model,
                src,
                out,
                "--mmi_model",
                str(hf_model),
                "--mmi_candidates",
                "3",
                "--max_new_tokens",
                "4",
                "--top_k",
                "20",
            )
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 1


def test_mmi_batched_scores_equal_one_at_a_time(hf_model, monkeypatch):
    import lsp_model.mmi as mmi

    model, tok = load_model(str(hf_model)), load_tokenizer()
    history = ["good morning to you", "hello there"]
    candidates = ["hi", "hey you , how are things going today ?", "", "ok then"]
    one_by_one = [backward_scores(model, tok, history, [c], batch_size=1)[0] for c in candidates]
    monkeypatch.setattr(mmi, "POSITIONS_PER_PROJECTION", 5)  # several projection slices
    batched = backward_scores(model, tok, history, candidates, batch_size=3)
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    long_reply = " ".join(["word"] * 40)
    # No context token fits after a reply this long: nothing to score.
    assert backward_scores(model, tok, history, [long_reply, "hi"], max_tokens=20)[0] == float(
        "-inf"
    )


def test_bad_input_is_a_clear_error(hf_model, tmp_path, capsys):
    assert decode.main(io_args(hf_model, tmp_path / "no.txt", tmp_path / "o.txt")) == 2
    assert "no.txt: no such file" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("")
    assert decode.main(io_args(hf_model, tmp_path / "empty.txt", tmp_path / "o.txt")) == 2
    assert "no line to decode" in capsys.readouterr().err


def test_line_separators_inside_text_keep_lines_aligned(tmp_path):
    src = tmp_path / "t.tsv"
    # U+2028 and a form feed inside Reddit text are not line ends; CRLF ends are.
    src.write_bytes("a\u2028b EOS c\tref\r\nd\x0ce\r\nlast".encode())
    assert decode.read_contexts(str(src)) == [["a b", "c"], ["d e"], ["last"]]  # one line each


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "beam", "--num_beams", "0"], "num_beams must be >= 1"),
        (["--method", "sample", "--top_p", "1.5"], "top_p must be in (0, 1]"),
        (["--mmi_model", "x", "--temperature", "0"], "temperature must be > 0"),
        (["--mmi_model", "x", "--mmi_candidates", "0"], "--mmi_candidates must be >= 1"),
        (["--max_new_tokens", "0"], "max_new_tokens must be >= 1"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--max_new_tokens", "500"], "leaves no room for context in the model's 128 positions"),
        (["--device", "nonsense"], "--device nonsense"),
        (["--device", "cpu", "--dtype", "float16"], "--dtype float16 needs a CUDA device"),
    ],
)
def test_bad_options_are_one_line_errors(hf_model, tmp_path, capsys, extra, message):
    src = tmp_path / "t.tsv"
    src.write_text("hello there\n")
    out = tmp_path / "o.txt"
    assert decode.main(io_args(hf_model, src, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_unreadable_input_is_located(hf_model, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "bad.txt").write_bytes(b"fine\nbroken \xff here\n")
    for name, message in (
        ("folder", "folder: is a folder"),
        ("bad.txt", "bad.txt:2: not valid UTF-8"),
    ):
        assert decode.main(io_args(hf_model, tmp_path / name, tmp_path / "o.txt")) == 2
        assert message in capsys.readouterr().err


def test_cuda_device_without_a_gpu_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        decode.check_device("cuda:0")
    assert decode.check_device("cpu") == "cpu"
    assert decode.check_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert decode.check_device("auto") == "cuda"  # the default: a GPU when there is one


def test_help_and_option_mistakes_answer_before_torch_is_imported(tmp_path):
    # torch and transformers take seconds to import: a typo must not wait for them.
    assert main_in_child("decode", "--help") == [0, "", []]
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("hello\n")
    for extra, message in (
        (["--method", "sample", "--top_p", "2"], "top_p must be in (0, 1]"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--dtype", "float64"], "invalid choice: 'float64'"),
    ):
        status, line, loaded = main_in_child("decode", *io_args("m", src, out, *extra))
        assert (status, loaded) == (2, []) and message in line, (extra, line)
    status, line, loaded = main_in_child("decode", *io_args("m", tmp_path / "none", out))
    assert (status, loaded) == (2, []) and "none: no such file" in line, line
    # Past the checks of the options alone, the device is checked: that needs torch.
    status, line, loaded = main_in_child("decode", *io_args("m", src, out, "--device", "bad"))
    assert (status, loaded) == (2, ["torch"]) and "--device bad" in line, line


def test_bfloat16_decoding_on_cpu(hf_model, tmp_path):
    src = tmp_path / "t.tsv"
    src.write_text("hello there\nhow are you ?\n")
    out = tmp_path / "o.txt"
    base = io_args(
        str(hf_model), str(src), str(out), "--dtype", "bfloat16", "--max_new_tokens", "5"
    )
    for extra in (["--method", "beam"], ["--mmi_model", str(hf_model), "--mmi_candidates", "3"]):
        assert decode.main(base + extra) == 0
        assert len(out.read_text().splitlines()) == 2


def test_repetition_penalty_flag(hf_model, tmp_path, capsys):
    src = tmp_path / "t.tsv"
    src.write_text("hello there\n")
    out = tmp_path / "hyp.txt"
    argv = ["--model_name_or_path", str(hf_model), "--input", str(src), "--output", str(out),
            "--max_new_tokens", "8"]  # fmt: skip
    assert decode.main(argv) == 0
    plain = out.read_text()
    assert decode.main([*argv, "--repetition_penalty", "1e4"]) == 0
    assert out.read_text() != plain
    assert decode.main([*argv, "--repetition_penalty", "0"]) == 2
    assert "decode.py: error: repetition_penalty must be > 0" in capsys.readouterr().err


def test_folder_without_weights_is_refused_unless_random_init(hf_model, tmp_path, capsys, caplog):
    import shutil

    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(hf_model / "config.json", config_only / "config.json")
    src = tmp_path / "in.txt"
    src.write_text("hello there\n")
    out = tmp_path / "hyp.txt"
    assert decode.main(io_args(config_only, src, out, "--max_new_tokens", "3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decode.py: error:" in err
    assert str(config_only) in err and "no weights" in err and "--random_init" in err
    assert not out.exists()
    args = io_args(config_only, src, out, "--max_new_tokens", "3", "--random_init")
    assert decode.main(args) == 0
    assert "decoding with random ones (--random_init)" in caplog.text
    assert len(out.read_text().splitlines()) == 1
    # a backward model without weights is refused the same way
    args = io_args(hf_model, src, out, "--mmi_model", str(config_only), "--mmi_candidates", "2")
    assert decode.main(args) == 2
    assert "no weights" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["folder", "file_as_parent", "unwritable"])
def test_unwritable_output_is_refused_before_loading(
    hf_model, tmp_path, capsys, monkeypatch, where
):
    import lsp_decode.common

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr(lsp_decode.cli, "load_for_decoding", no_loading)
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    if where == "folder":
        out = tmp_path / "outdir"
        out.mkdir()
        expected = "is a folder"
    elif where == "file_as_parent":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "sub" / "hyp.txt"
        expected = "is a file, not a folder"
    else:
        import tempfile

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        out = tmp_path / "missing" / "parent" / "hyp.txt"
        expected = f"cannot create files in {tmp_path} (Permission denied)"
    assert lsp_decode.common.load_for_decoding is not no_loading
    assert decode.main(io_args(hf_model, src, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and expected in err, err


def test_output_into_missing_folders_is_created(hf_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    out = tmp_path / "new" / "deeper" / "hyp.txt"
    assert decode.main(io_args(hf_model, src, out, "--max_new_tokens", "2")) == 0
    assert out.is_file() and not list(out.parent.glob(".*"))  # no probe or temp file left


def test_write_failing_after_decoding_is_one_line(hf_model, tmp_path, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(decode, "write_text_atomic", full)
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    out = tmp_path / "hyp.txt"
    assert decode.main(io_args(hf_model, src, out, "--max_new_tokens", "2")) == 1
    err = capsys.readouterr().err
    assert f"decode.py: error: cannot write {out}: No space left on device" in err
    assert "Traceback" not in err


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only tmpfs (needs root and mount); skipped where it cannot be made."""
    import os
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root; the other cases patch the probe")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)])
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not allowed here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_read_only_mount_is_refused_up_front(hf_model, tmp_path, capsys, read_only_mount):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    out = read_only_mount / "hyp.txt"
    assert decode.main(io_args(hf_model, src, out)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"decode.py: error: --output {out}: cannot create files in {read_only_mount} "
        "(Read-only file system)\n"
    )
