import json
import shutil
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2].parent / "shared" / "dstc_demo"


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def demo():
    """hyp, refs (per segment) and the expected figures of the DSTC-7 demo."""
    if not (DEMO / "expected.json").is_file():
        pytest.skip(f"DSTC-7 demo data not found at {DEMO} (shared/dstc_demo next to the repo)")
    hyps = read(DEMO / "hyp.txt")
    refs = [list(seg) for seg in zip(read(DEMO / "ref0.txt"), read(DEMO / "ref1.txt"))]
    expected = json.loads((DEMO / "expected.json").read_text(encoding="utf-8"))
    return hyps, refs, expected


@pytest.fixture(scope="session")
def meteor_ready():
    from dstc.meteor import MeteorUnavailable, find_meteor_jar

    if shutil.which("java") is None:
        pytest.skip("java is not installed: METEOR cannot run")
    try:
        find_meteor_jar()
    except MeteorUnavailable as exc:
        pytest.skip(f"METEOR jar unavailable: {exc}")
