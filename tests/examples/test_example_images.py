"""The examples' images and stack configs, read statically (no Docker engine here): every example's
Dockerfile is lint-clean and runs as the contract's user; iris-forest's and tabular-text's pin every
package, install wheels only, run their train.py, and their stack-config.yaml says what `pulumi up`
needs, in keys Pulumi.yaml declares."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlapp import contract
from tests import dockerfiles

from .trainers import EXAMPLES, REPO, stack_config

DOCKERFILES = sorted(EXAMPLES.glob("*/Dockerfile"))
# The two examples whose trainer is one train.py; digits is a package with its own tests (tests/examples/digits).
SCRIPTED = ["iris-forest", "tabular-text"]
ENTRYPOINT = 'ENTRYPOINT ["python", "/app/train.py"]'
# A DNS-1123 label, as modelName must be (Pulumi.yaml).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def final_stage(dockerfile: Path) -> list[str]:
    lines = dockerfiles.instructions(dockerfile)
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def test_the_documented_examples_have_images() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= set(SCRIPTED), DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [dockerfiles.hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_image_runs_as_the_contracts_numeric_user(dockerfile: Path) -> None:
    """docs/trainer-contract.md: uid and gid 10001, numeric so that runAsNonRoot can verify it."""
    users = [line for line in final_stage(dockerfile) if line.upper().startswith("USER ")]
    assert users, f"{dockerfile}: the final stage sets no USER"
    assert users[-1] == f"USER {contract.APP_UID}:{contract.APP_UID}", users
    assert any(line.startswith(("ENTRYPOINT ", "CMD ")) for line in final_stage(dockerfile)), "nothing to run"


@pytest.mark.parametrize("example", SCRIPTED)
def test_the_image_runs_train_py_ready_for_a_read_only_root(example: str) -> None:
    dockerfile = EXAMPLES / example / "Dockerfile"
    stage = final_stage(dockerfile)
    assert "COPY train.py /app/train.py" in stage
    assert stage[-1] == ENTRYPOINT
    env = " ".join(line for line in dockerfiles.instructions(dockerfile) if line.startswith("ENV "))
    # A read-only root filesystem: no bytecode written beside the sources, HOME on the /tmp emptyDir.
    for setting in ("HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert setting in env, f"{dockerfile}: no ENV {setting}"
    ignored = {
        line for line in (EXAMPLES / example / ".dockerignore").read_text().splitlines() if not line.startswith("#")
    }
    assert ignored == {"*", "!train.py", "!requirements.txt"}, "the build context is more than the trainer"


@pytest.mark.parametrize("example", SCRIPTED)
def test_every_package_is_pinned_and_installed_from_wheels(example: str) -> None:
    requirements = [
        line.strip()
        for line in (EXAMPLES / example / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    unpinned = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*", r)]
    assert not unpinned, f"{example}/requirements.txt: not pinned with ==: {unpinned}"
    installs = [line for line in dockerfiles.instructions(EXAMPLES / example / "Dockerfile") if "pip install" in line]
    assert installs
    for line in installs:
        for command in line.split("&&"):
            if "pip install" in command:
                assert "--only-binary=:all:" in command, command


def test_tabular_text_takes_torch_from_the_index_the_stack_passes() -> None:
    """`pulumi up` passes PyTorch's wheel index for mlstack:trainerCuda as TORCH_INDEX_URL
    (docs/trainer-contract.md, GPUs): torch must come from it, in the stage that installs it."""
    lines = dockerfiles.instructions(EXAMPLES / "tabular-text" / "Dockerfile")
    arg = next(i for i, line in enumerate(lines) if line.startswith("ARG TORCH_INDEX_URL="))
    install = next(i for i, line in enumerate(lines) if '--index-url "$TORCH_INDEX_URL"' in line)
    stage_of = [sum(1 for line in lines[: i + 1] if line.startswith("FROM ")) for i in (arg, install)]
    assert stage_of[0] == stage_of[1], "the ARG is declared in another stage than the install that reads it"
    assert "grep -E '^torch==' /tmp/requirements.txt" in lines[install]


@pytest.mark.parametrize("example", SCRIPTED)
def test_the_stack_config_names_this_example_and_a_gate(example: str) -> None:
    config = stack_config(example)
    assert config["mlstack:trainerContext"] == f"examples/{example}"
    assert (REPO / config["mlstack:trainerContext"] / "Dockerfile").is_file()
    assert DNS_LABEL.match(config["mlstack:modelName"]), config["mlstack:modelName"]
    assert config["mlstack:gateDirection"] in contract.GATE_DIRECTIONS
    # A string in Pulumi.yaml (a number there would be read as a float and lose its spelling).
    assert isinstance(config["mlstack:gateThreshold"], str)
    float(config["mlstack:gateThreshold"])
    assert config["mlstack:gateMetric"] in {"accuracy", "loss"}, "a metric the trainer writes to metrics.json"


@pytest.mark.parametrize("example", SCRIPTED)
def test_the_stack_configs_keys_are_declared_in_pulumi_yaml(example: str) -> None:
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    keys = [key.removeprefix("mlstack:") for key in stack_config(example)]
    assert not [k for k in keys if k not in declared], f"{example}/stack-config.yaml: undeclared keys"


def test_iris_forests_trainer_command_runs_the_script_the_image_holds() -> None:
    command = stack_config("iris-forest")["mlstack:trainerCommand"]
    assert all(isinstance(arg, str) for arg in command), "Kubernetes takes a command of strings"
    assert command[:2] == json.loads(ENTRYPOINT.removeprefix("ENTRYPOINT "))
