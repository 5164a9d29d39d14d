"""The DSTC-7 demo files ship with the tests, so the demo tests never skip for want of data."""

from .conftest import DEMO


def test_demo_files_are_in_the_repository(demo):
    for name in ("hyp.txt", "ref0.txt", "ref1.txt", "expected.json", "NOTICE"):
        assert (DEMO / name).is_file(), name
    hyps, refs, expected = demo
    assert len(hyps) == 3 and [len(seg) for seg in refs] == [2, 2, 2]
    assert expected["nist"] == [1.8338, 2.0838, 2.1949, 2.1949]
    assert "MIT" in (DEMO / "NOTICE").read_text(encoding="utf-8")
