"""Small DSTC-7 style inputs written into a temporary folder."""

from pathlib import Path


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def demo_multiref(tmp: Path, hyps: list[str], refs: list[list[str]]) -> tuple[Path, Path, Path]:
    """The demo as a DSTC-7 submission: keys listed out of order, a keyed submission in
    yet another order with one extra key, and a multi-reference file with an extra line."""
    keys = [f"k{i}" for i in range(1, len(hyps) + 1)]
    multiref = write(
        tmp / "test.refs.txt",
        [
            f"{k}\t" + "\t".join(f"0.{9 - j}|{r}" for j, r in enumerate(seg))
            for k, seg in zip(keys, refs)
        ]
        + ["k9\t1.0|not selected"],
    )
    keys_file = write(tmp / "keys.txt", list(reversed(keys)))
    submission = write(
        tmp / "sub.txt",
        ["k9\tnot selected either"] + [f"{k}\t{h}" for k, h in reversed(list(zip(keys, hyps)))],
    )
    return submission, multiref, keys_file
