"""LSP-linux.yml, LSP-generic.yml and the Dockerfile install what requirements.txt says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = ("LSP-linux.yml", "LSP-generic.yml")
# The only pip options an environment file may carry: where torch comes from.
ALLOWED_PIP_OPTIONS = re.compile(r"--extra-index-url https://download\.pytorch\.org/whl/\w+")
REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")


def canonical(name: str) -> str:
    """PEP 503 normalised project name: PyYAML == pyyaml, huggingface_hub == huggingface-hub."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(line: str) -> tuple[str, str]:
    """``'transformers>=5.0,<6'`` -> ``('transformers', '<6,>=5.0')`` (specifiers sorted)."""
    match = REQ.match(line.strip())
    assert match, f"not a plain requirement: {line!r}"
    name, spec = match.groups()
    parts = sorted(p.strip() for p in spec.split(",") if p.strip())
    return canonical(name), ",".join(parts)


def requirements() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"requirements.txt option not handled here: {line}"
            name, spec = parse_requirement(line)
            out[name] = spec
    return out


def python_version() -> str:
    """The minor version pyproject.toml requires (``>=3.11`` -> ``3.11``)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'requires-python\s*=\s*">=\s*(\d+\.\d+)"', text)
    assert match, "pyproject.toml has no requires-python >= X.Y"
    return match.group(1)


def test_requirements_parse() -> None:
    reqs = requirements()
    assert reqs["torch"].startswith("==")
    assert {"chatterbot-corpus", "pyyaml", "transformers"} <= set(reqs)


@pytest.mark.parametrize("name", ENV_FILES)
def test_conda_env_matches_requirements(name: str) -> None:
    env = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    assert env["name"] == "LSP"
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "one pip: section"
    assert f"python={python_version()}" in conda
    assert "pip" in conda
    # Conda packages other than python and pip would install beside the pip ones and could
    # shadow them (a conda torch or numpy): everything Python comes from the pip section.
    assert set(conda) == {f"python={python_version()}", "pip"}, conda
    assert not [d for d in deps if not isinstance(d, str | dict)]

    pip: dict[str, str] = {}
    for entry in pip_sections[0]:
        entry = str(entry).strip()
        if entry.startswith("-"):
            assert ALLOWED_PIP_OPTIONS.fullmatch(entry), f"{name}: unexpected pip option {entry}"
            continue
        pkg, spec = parse_requirement(entry)
        assert pkg not in pip, f"{name}: {pkg} listed twice"
        pip[pkg] = spec
    assert pip == requirements()


def test_conda_envs_agree() -> None:
    linux, generic = (yaml.safe_load((REPO / n).read_text(encoding="utf-8")) for n in ENV_FILES)
    assert linux["channels"] == generic["channels"]
    pip = [
        [
            e
            for e in next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
            if not str(e).startswith("-")
        ]
        for env in (linux, generic)
    ]
    assert pip[0] == pip[1], "same packages in the same order"
    # Linux takes PyPI's CUDA build of torch; the generic file the CPU build.
    assert not any(
        str(e).startswith("-")
        for d in linux["dependencies"]
        if isinstance(d, dict)
        for e in d["pip"]
    )
    assert any(
        "whl/cpu" in str(e)
        for d in generic["dependencies"]
        if isinstance(d, dict)
        for e in d["pip"]
    )


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return out


def run_commands() -> list[list[str]]:
    """Every shell command of the RUN lines, split on && into argument lists."""
    commands = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "RUN":
            commands += [shlex.split(part) for part in rest.split("&&") if part.strip()]
    return commands


def pip_installs() -> list[list[str]]:
    return [c[2:] for c in run_commands() if c[:2] == ["pip", "install"]]


def test_dockerfile_base_and_python() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] in ("FROM", "ARG")
    base = next(rest for kw, rest in instructions if kw == "FROM")
    assert re.match(r"nvidia/cuda:\d+\.\d+(\.\d+)?-[\w-]*ubuntu\d+\.\d+$", base), base
    version = python_version()
    apt = [c for c in run_commands() if c[:2] == ["apt-get", "install"]]
    assert any(f"python{version}" in c for c in apt), "installs the toolkit's Python"
    assert any(c[:3] == [f"python{version}", "-m", "venv"] for c in run_commands())


def test_dockerfile_installs_requirements_with_a_cuda_torch_first() -> None:
    installs = pip_installs()
    torch_pin = "torch" + requirements()["torch"]
    first_torch = next(i for i, args in enumerate(installs) if torch_pin in args)
    reqs = next(i for i, args in enumerate(installs) if args[-2:] == ["-r", "requirements.txt"])
    assert first_torch < reqs, "the CUDA torch wheel goes in before requirements.txt"
    torch_args = installs[first_torch]
    index = torch_args[torch_args.index("--index-url") + 1]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/(cu\d+|\$\{TORCH_CUDA\})", index)
    args = dict(rest.partition("=")[::2] for kw, rest in dockerfile_instructions() if kw == "ARG")
    if "${TORCH_CUDA}" in index:
        assert re.fullmatch(r"cu\d+", args.get("TORCH_CUDA", "")), "TORCH_CUDA has a default"
        # The wheel's CUDA release matches the base image's (cu128 <-> cuda:12.8.x).
        base = next(rest for kw, rest in dockerfile_instructions() if kw == "FROM")
        major, minor = re.match(r"nvidia/cuda:(\d+)\.(\d+)", base).groups()
        assert args["TORCH_CUDA"] == f"cu{major}{minor}"
    # requirements.txt is copied in before it is installed.
    copies = [rest.split() for kw, rest in dockerfile_instructions() if kw == "COPY"]
    assert any(c[0] == "requirements.txt" for c in copies)


def test_dockerfile_runs_the_demo() -> None:
    cmd = [rest for kw, rest in dockerfile_instructions() if kw in ("CMD", "ENTRYPOINT")]
    assert cmd, "no CMD"
    assert "demo.py" in cmd[-1]
    assert any(kw == "COPY" and rest.split()[0] == "." for kw, rest in dockerfile_instructions())


def test_dockerignore_keeps_data_out() -> None:
    lines = {
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".git", "data", "models", "demo_output", "reddit_extractor/data"} <= lines
    # Nothing the image needs is ignored.
    for needed in ("requirements.txt", "demo.py", "LSP_train.py", "configs", "lsp_data"):
        assert needed not in lines
