import json
import shutil
from pathlib import Path

import pytest

# The DSTC-7 demo files travel with the tests (see data/dstc_demo/NOTICE).
DEMO = Path(__file__).resolve().parent / "data" / "dstc_demo"


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def demo():
    """hyp, refs (per segment) and the expected figures of the DSTC-7 demo."""
    hyps = read(DEMO / "hyp.txt")
    refs = [list(seg) for seg in zip(read(DEMO / "ref0.txt"), read(DEMO / "ref1.txt"))]
    expected = json.loads((DEMO / "expected.json").read_text(encoding="utf-8"))
    return hyps, refs, expected


@pytest.fixture(scope="session")
def meteor_ready():
    """Skips (with what to install) when METEOR 1.5 cannot run here."""
    from dstc.meteor import JAR_ENV, MeteorUnavailable, find_meteor_jar

    if shutil.which("java") is None:
        pytest.skip(
            "METEOR test skipped: no 'java' on PATH (install a Java runtime, e.g. "
            "openjdk-17-jre-headless)"
        )
    try:
        find_meteor_jar()
    except MeteorUnavailable as exc:
        pytest.skip(f"METEOR test skipped: {exc} (pip install pycocoevalcap, or set ${JAR_ENV})")
