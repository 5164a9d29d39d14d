"""One source of versions: pyproject.toml's ranges, requirements.lock's exact pins, and the
conda files and Dockerfile that install from them."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = ("LSP-linux.yml", "LSP-generic.yml")
# The only pip options an environment file may carry: where torch comes from.
ALLOWED_PIP_OPTIONS = re.compile(r"--extra-index-url https://download\.pytorch\.org/whl/\w+")


def canonical(name: str) -> str:
    """PEP 503 normalised project name: PyYAML == pyyaml, huggingface_hub == huggingface-hub."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(dep) for dep in project()["dependencies"]]


def all_requirements() -> list[Requirement]:
    extras = project()["optional-dependencies"]
    return runtime_requirements() + [Requirement(d) for deps in extras.values() for d in deps]


def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([\w.!]+)", line)
        assert match, f"requirements.lock: not an exact pin: {line!r}"
        name = canonical(match.group(1))
        assert name not in pins, f"requirements.lock: {name} twice"
        pins[name] = match.group(2)
    return pins


def python_version() -> str:
    """The minor version pyproject.toml requires (``>=3.11`` -> ``3.11``)."""
    match = re.fullmatch(r">=\s*(\d+\.\d+)", project()["requires-python"])
    assert match, "pyproject.toml has no requires-python >= X.Y"
    return match.group(1)


def test_lock_pins_every_requirement_within_its_range() -> None:
    pins = lock()
    for req in all_requirements():
        name = canonical(req.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )
    assert not re.search(r"\+", " ".join(pins.values())), "no local labels (+cpu) in the lock"
    assert "dialogpt-toolkit" not in pins


def test_torch_is_pinned_exactly() -> None:
    torch = next(r for r in runtime_requirements() if r.name == "torch")
    assert str(torch.specifier).startswith("==")


@pytest.mark.parametrize(
    ("name", "target"), [("requirements.txt", "."), ("requirements-dev.txt", ".[dev]")]
)
def test_requirement_files_install_the_project_at_the_locked_versions(
    name: str, target: str
) -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in (REPO / name).read_text(encoding="utf-8").splitlines()
    ]
    assert [line for line in lines if line] == ["-c requirements.lock", f"-e {target}"]


@pytest.mark.parametrize("name", ENV_FILES)
def test_conda_env_pins_the_locked_versions(name: str) -> None:
    env = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    assert env["name"] == "LSP"
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "one pip: section"
    # Conda packages other than python and pip would install beside the pip ones and could
    # shadow them (a conda torch or numpy): everything Python comes from the pip section.
    assert set(conda) == {f"python={python_version()}", "pip"}, conda
    assert not [d for d in deps if not isinstance(d, str | dict)]

    packages = []
    for entry in pip_sections[0]:
        entry = str(entry).strip()
        if entry.startswith("-"):
            assert ALLOWED_PIP_OPTIONS.fullmatch(entry), f"{name}: unexpected pip option {entry}"
        else:
            packages.append(entry)
    pins = lock()
    wanted = [f"{r.name}=={pins[canonical(r.name)]}" for r in runtime_requirements()]
    assert packages == wanted, f"{name} is stale: run python tools/update_lock.py"


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


def test_dockerfile_installs_the_lock_with_a_cuda_torch_first() -> None:
    installs = pip_installs()
    torch_pin = f"torch=={lock()['torch']}"
    first_torch = next(i for i, args in enumerate(installs) if torch_pin in args)
    locked = next(i for i, args in enumerate(installs) if args[-2:] == ["-r", "requirements.lock"])
    project_install = next(i for i, args in enumerate(installs) if args[-2:] == ["-e", "."])
    assert first_torch < locked < project_install, "CUDA torch, then the lock, then the toolkit"
    assert "--no-deps" in installs[project_install], "the toolkit adds nothing beyond the lock"
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
    # The lock is copied in before it is installed.
    copies = [rest.split() for kw, rest in dockerfile_instructions() if kw == "COPY"]
    assert any(c[0] == "requirements.lock" for c in copies)


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
    for needed in (
        "requirements.lock",
        "pyproject.toml",
        "demo.py",
        "LSP_train.py",
        "configs",
        "lsp_data",
    ):
        assert needed not in lines


def _update_lock_module():
    spec = importlib.util.spec_from_file_location("update_lock", REPO / "tools" / "update_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ENV_FILES)
def test_update_lock_writes_the_conda_files_as_committed(name: str) -> None:
    update_lock = _update_lock_module()
    pins = update_lock.read_lock()
    assert pins == lock()
    assert update_lock.conda_text(REPO / name, pins) == (REPO / name).read_text(encoding="utf-8")


def test_update_lock_lock_text_round_trips(tmp_path: Path) -> None:
    update_lock = _update_lock_module()
    path = tmp_path / "requirements.lock"
    path.write_text(update_lock.lock_text({"torch": "2.13.0", "pyyaml": "6.0.4"}), encoding="utf-8")
    assert update_lock.read_lock(path) == {"torch": "2.13.0", "pyyaml": "6.0.4"}
