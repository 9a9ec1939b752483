"""The digits trainer's image (examples/digits/Dockerfile and its requirements): static checks, no Docker
engine here. What ties it to the platform's uid is in tests/app/test_app_contract.py."""

from __future__ import annotations

import re
import subprocess

from tests import dockerfiles

from .helpers import EXAMPLE

DOCKERFILE = EXAMPLE / "Dockerfile"


def stages() -> dict[str, list[str]]:
    return dockerfiles.stages(DOCKERFILE)


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [dockerfiles.hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_image_runs_python_m_digits_as_a_numeric_non_root_user() -> None:
    """The Job runs the image's own entrypoint (the contract's "What runs"); the last stage is the image."""
    image = list(stages().values())[-1]
    users = [line for line in image if line.startswith("USER ")]
    assert users, "the image sets no USER"
    uid = users[-1].split()[1].split(":")[0]
    assert uid.isdigit(), f"USER {uid} is not numeric"
    assert int(uid) != 0, "the image runs as root"
    assert image[-1] == 'ENTRYPOINT ["python", "-m", "digits"]', image[-1]
    assert "COPY digits /app/digits" in image
    base = " ".join(stages()["base"])
    for setting in ("HOME=/tmp", "PYTHONPATH=/app", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert setting in base, setting


def test_torch_comes_from_the_index_arg_alone() -> None:
    """Any build's index works, a CUDA one or PyTorch's CPU-only one (mlstack/catalogue.py; `pulumi up`
    passes it as TORCH_INDEX_URL): the ARG is declared in the stage whose RUN installs torch (an ARG
    declared before FROM is not seen there), and no RUN names an index, a CUDA build or nvidia-* itself."""
    s = stages()
    deps = s["deps"]
    args = [i for i, line in enumerate(deps) if re.match(r"ARG TORCH_INDEX_URL(=|$)", line)]
    installs = [
        i for i, line in enumerate(deps) if line.startswith("RUN ") and '--index-url "$TORCH_INDEX_URL"' in line
    ]
    assert len(args) == 1, "deps must declare ARG TORCH_INDEX_URL once"
    assert installs, "deps installs no torch from $TORCH_INDEX_URL"
    assert args[0] < installs[0], "ARG TORCH_INDEX_URL must come before the RUN that uses it"
    runs = " ".join(line for lines in s.values() for line in lines if line.startswith("RUN "))
    assert not re.search(r"https?://|--extra-index-url|\bcu1\d\d\b|nvidia", runs), runs


def test_requirements_are_pinned() -> None:
    for raw in (EXAMPLE / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+]*", line), line


def test_the_build_context_admits_only_the_package_and_its_requirements() -> None:
    lines = [
        line.strip()
        for line in (EXAMPLE / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is ignored first"
    assert sorted(line for line in lines if line.startswith("!")) == ["!digits/", "!requirements.txt"]
