"""Building hypotheses and references from a multi-reference file, as DSTC-7 dstc.py."""

import pytest

from dstc.multiref import build_instances, ref_text
from dstc.textio import InputError

from .helpers import write


@pytest.fixture
def three(tmp_path):
    refs = write(
        tmp_path / "refs.txt",
        ["b\t1|B0\t1|B1\t1|B2", "a\t1|A0\t0.5|A1\t0.2|A2|tail", "c\tC0 no bar"],
    )
    keys = write(tmp_path / "keys.txt", ["c", "a", "b"])
    sub = write(tmp_path / "sub.txt", ["a\tha", "b\tctx\thb", "c\thc", "zz\tignored"])
    return sub, refs, keys


def test_reference_text():
    assert ref_text("0.5|some text") == "some text"
    assert ref_text("0.5|a|b") == "a"  # split('|')[1], as the DSTC script
    assert ref_text("0.5|a|b", "after_bar") == "a|b"
    assert ref_text("no bar at all") == "no bar at all"


def test_sorted_keys_cycling_and_held_out_reference(three):
    sub, refs, keys = three
    inst = build_instances(sub, refs, keys, n_refs=6, vshuman=1)
    assert inst.keys == ["a", "b", "c"]  # scored in sorted key order
    assert inst.hyps == ["ha", "hb", "hc"]  # the response is the last field
    # 3 refs cycled to 6 (0,1,2,0,1,2) with reference 1 replaced by the next one (2)
    assert inst.refs[0] == ["A0", "A2", "A2", "A0", "A2", "A2"]
    # a single reference is simply repeated
    assert inst.refs[2] == ["C0 no bar"] * 6
    inst = build_instances(sub, refs, keys, n_refs=4, vshuman=-1)
    assert inst.refs[1] == ["B0", "B1", "B2", "B0"]


def test_human_system_and_n_lines(three, tmp_path):
    sub, refs, keys = three
    ab = write(tmp_path / "ab.txt", ["b", "a"])
    inst = build_instances(None, refs, ab, n_refs=2, vshuman=1, human=True)
    assert inst.hyps == ["A1", "B1"]
    assert inst.refs[0] == ["A0", "A2"]
    with pytest.raises(InputError, match="no reference 1"):
        build_instances(None, refs, keys, vshuman=1, human=True)  # "c" has one reference
    inst = build_instances(sub, refs, keys, n_lines=2)
    assert inst.keys == ["a", "b"]


def test_clean_applies_to_hypotheses_and_references(tmp_path):
    refs = write(tmp_path / "refs.txt", ["k\t1|Don't GO"])
    keys = write(tmp_path / "keys.txt", ["k"])
    sub = write(tmp_path / "sub.txt", ["k\tI Can't"])
    from dstc.tokenizers import clean_str

    inst = build_instances(sub, refs, keys, n_refs=1, vshuman=-1, clean=clean_str)
    assert inst.hyps == ["i can n't"] and inst.refs == [["do n't go"]]


def test_unkeyed_submission_aligned_with_keys(tmp_path):
    refs = write(tmp_path / "refs.txt", ["x\t1|rx", "y\t1|ry"])
    keys = write(tmp_path / "keys.txt", ["y", "x"])
    sub = write(tmp_path / "sub.txt", ["for y", "for x"])
    inst = build_instances(sub, refs, keys, n_refs=1, vshuman=-1)
    assert list(zip(inst.keys, inst.hyps, inst.refs)) == [
        ("x", "for x", ["rx"]),
        ("y", "for y", ["ry"]),
    ]
    short = write(tmp_path / "short.txt", ["only one"])
    with pytest.raises(InputError, match=r"short.txt:2: has 1 lines but the keys file has 2"):
        build_instances(short, refs, keys)


def test_trailing_empty_hypothesis_is_dropped_like_the_dstc_script(tmp_path):
    # dstc.py writes hyp.txt with '\n'.join and reads it back with readlines(): an empty
    # last line vanishes and that instance leaves every metric.
    refs = write(tmp_path / "refs.txt", ["a\t1|ra", "b\t1|rb", "c\t1|rc"])
    keys = write(tmp_path / "keys.txt", ["a", "b", "c"])
    sub = write(tmp_path / "sub.txt", ["a\t", "b\thb", "c\t"])
    inst = build_instances(sub, refs, keys, n_refs=1, vshuman=-1)
    assert inst.keys == ["a", "b"] and inst.hyps == ["", "hb"] and inst.dropped_last_empty


def test_errors_name_file_and_line(tmp_path, three):
    sub, refs, keys = three
    keys2 = write(tmp_path / "keys2.txt", ["a", "nope"])
    with pytest.raises(InputError, match=r"keys2.txt:2: key 'nope' has no response"):
        build_instances(sub, refs, keys2)
    inst = build_instances(sub, refs, keys2, skip_missing=True, warn=lambda m: None)
    assert inst.keys == ["a"]
    sub2 = write(tmp_path / "sub2.txt", ["a\tx", "nope\ty"])
    with pytest.raises(InputError, match=r"keys2.txt:2: key 'nope' has no line in"):
        build_instances(sub2, refs, keys2)
    bad_refs = write(tmp_path / "bad_refs.txt", ["a"])
    with pytest.raises(InputError, match=r"bad_refs.txt:1: instance 'a' has no reference"):
        build_instances(sub2, bad_refs, keys2)
    keyless = write(tmp_path / "keyless.txt", ["a\tx", "no tab here"])
    with pytest.raises(InputError, match=r"keyless.txt:2: no tab"):
        build_instances(keyless, refs, keys2)
    dup = write(tmp_path / "dup.txt", ["a", "b", "a"])
    with pytest.raises(InputError, match=r"dup.txt:3: key 'a' is listed twice"):
        build_instances(sub, refs, dup)
    empty = write(tmp_path / "empty.txt", [])
    with pytest.raises(InputError, match=r"empty.txt: file is empty"):
        build_instances(empty, refs, keys)


def test_unkeyed_submission_aligned_with_a_larger_key_list(tmp_path):
    # DialoGPT's layout: responses for the whole test set (keys in all.txt), of which the
    # keys file selects a part.
    refs = write(tmp_path / "refs.txt", ["x\t1|rx", "y\t1|ry", "z\t1|rz"])
    keys = write(tmp_path / "keys.txt", ["z", "x"])
    all_keys = write(tmp_path / "all.txt", ["x", "y", "z"])
    sub = write(tmp_path / "sub.txt", ["for x", "for y", "for z"])
    inst = build_instances(sub, refs, keys, n_refs=1, vshuman=-1, hyp_keys=all_keys)
    assert list(zip(inst.keys, inst.hyps)) == [("x", "for x"), ("z", "for z")]
    two = write(tmp_path / "two.txt", ["for x", "for y"])
    with pytest.raises(InputError, match=r"two.txt:3: has 2 lines but .*all.txt has 3 keys"):
        build_instances(two, refs, keys, hyp_keys=all_keys)


# What the DSTC-7 scripts did on these inputs, found by writing hyp.txt and ref0/1.txt as
# dstc.py writes them ('\n'.join, read back by readlines()) and running metrics.py's steps
# with the real scorers (perl mteval-v14c.pl -s src.xml -t hyp.xml -r ref.xml; java -jar
# meteor-1.5.jar hyp.txt refs_merged.txt -r 2 -l en -norm):
#   ref0 empty  -> mteval "FATAL ERROR: translated documents must contain the same # of
#                  segments" (NIST/BLEU -1); METEOR "test and reference not same length" (-1)
#   ref1 empty  -> same mteval error; merging references raises IndexError (script stops)
#   both empty  -> as ref0 empty
#   hyp + ref0  -> last instance dropped, NIST/BLEU and METEOR scored on the others
#   hyp + ref1  -> last instance dropped for NIST/BLEU; IndexError before METEOR
@pytest.mark.parametrize(
    "last_hyp, last_refs, mteval_fails, meteor_fails, dropped",
    [
        ("e f", ["", "e f"], True, "differ in length", False),
        ("e f", ["e f", ""], True, "IndexError", False),
        ("e f", ["", ""], True, "differ in length", False),
        ("", ["", "e f"], False, None, True),
        ("", ["e f", ""], False, "IndexError", True),
        ("", ["e f", "e"], False, "differ in length", True),
        ("e f", ["e f", "e"], False, None, False),
    ],
)
def test_empty_last_line_like_the_dstc_script(
    tmp_path, last_hyp, last_refs, mteval_fails, meteor_fails, dropped
):
    refs = write(
        tmp_path / "refs.txt",
        ["a\t1|a b\t1|x", "b\t1|c d\t1|y", "c\t1|" + "\t1|".join(last_refs)],
    )
    keys = write(tmp_path / "keys.txt", ["c", "a", "b"])
    sub = write(tmp_path / "sub.txt", ["a\ta b", "b\tc d", f"c\t{last_hyp}"])
    warnings = []
    inst = build_instances(sub, refs, keys, n_refs=2, vshuman=-1, warn=warnings.append)
    assert inst.dropped_last_empty == dropped
    assert inst.keys == (["a", "b"] if dropped else ["a", "b", "c"])
    assert (inst.mteval_failure is not None) == mteval_fails
    if meteor_fails is None:
        assert inst.meteor_failure is None
    else:
        assert meteor_fails in inst.meteor_failure
    if "" in last_refs:
        slots = ", ".join(str(i) for i, r in enumerate(last_refs) if r == "")
        assert any(f"reference(s) {slots} of the last instance" in w for w in warnings)
    kept = build_instances(sub, refs, keys, n_refs=2, vshuman=-1, keep_trailing_empty=True)
    assert len(kept.hyps) == 3 and kept.hyps[-1] == last_hyp and kept.refs[-1] == last_refs
    assert kept.mteval_failure is None and kept.meteor_failure is None
    assert not kept.dropped_last_empty


def test_empty_last_reference_after_cleaning_and_n_lines(tmp_path):
    # --clean empties an emoji-only reference; the DSTC script then loses that line. With
    # n_lines short of the last instance mteval only reads lines both files still have.
    from dstc.tokenizers import clean_str

    refs = write(tmp_path / "refs.txt", ["a\t1|A b\t1|x", "b\t1|C d\t1|🙂🙂"])
    keys = write(tmp_path / "keys.txt", ["a", "b"])
    sub = write(tmp_path / "sub.txt", ["a\ta b", "b\tc d"])
    inst = build_instances(sub, refs, keys, n_refs=2, vshuman=-1, clean=clean_str)
    assert inst.refs == [["a b", "x"], ["c d", ""]]
    assert "reference file(s) 1" in inst.mteval_failure and "IndexError" in inst.meteor_failure
    raw = build_instances(sub, refs, keys, n_refs=2, vshuman=-1)
    assert raw.mteval_failure is None and raw.meteor_failure is None
    cut = build_instances(sub, refs, keys, n_refs=2, vshuman=-1, clean=clean_str, n_lines=1)
    assert cut.mteval_failure is None and cut.hyps == ["a b"]
    assert "IndexError" in cut.meteor_failure  # METEOR's merge ignores n_lines in the script
    whole = build_instances(sub, refs, keys, n_refs=2, vshuman=-1, clean=clean_str, n_lines=2)
    assert whole.mteval_failure is not None
