"""lsp_demo.dummy_data: the bundled dialogue set (chatterbot-corpus) as training and validation tsv."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_data.parsing import parse_training_line
from lsp_demo import dummy_data as dummy


def _write_yml(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A chatterbot-style corpus with every awkward case the loader handles."""
    folder = tmp_path / "english"
    _write_yml(
        folder,
        "a.yml",
        """\
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
""",
    )
    _write_yml(
        folder,
        "b.yml",
        """\
categories: [b]
conversations:
- - Hello
  - Hi there
"""
        + "".join(f"- - question {i}\n  - answer {i}\n" for i in range(20)),
    )
    return folder


def test_load_conversations_counts_and_cleans(tiny_corpus: Path) -> None:
    stats = dummy.DummyDataStats()
    convs = dummy.load_conversations(tiny_corpus, stats)
    assert stats.files == 2
    assert stats.conversations_read == 9 + 21
    assert stats.duplicates == 2  # "Hello / Hi there" thrice
    assert stats.skipped == {
        "with a bool turn": 1,
        "with fewer than 2 turns": 1,
        "not a list of turns": 1,
    }
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
