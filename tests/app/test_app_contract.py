"""app/Dockerfile, the digits example's image and the app itself keep to mlapp.contract, the interface
the workloads are built from.

The workloads read the same module (components/workloads.py, components/gke.py), so a uid,
port or variable changed on one side only fails here instead of in a pod.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digits import train
from mlapp import contract, settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "app" / "Dockerfile"
# The default trainer's image (mlstack:trainerContext's default): its last stage is what runs.
TRAINER_DOCKERFILE = REPO / "examples" / "digits" / "Dockerfile"


def _stages(dockerfile: Path) -> dict[str, str]:
    """The instructions of each named build stage of ``dockerfile``."""
    text = dockerfile.read_text(encoding="utf-8")
    stages = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.M)
    return dict(zip(stages[1::2], stages[2::2], strict=True))


def _stage(name: str) -> str:
    """The instructions of one build stage of app/Dockerfile."""
    return _stages(DOCKERFILE)[name]


def _trainer_image() -> str:
    """The instructions of the digits example's last stage: the image the training Job runs."""
    return list(_stages(TRAINER_DOCKERFILE).values())[-1]


@pytest.mark.parametrize("image", ["trainer", "server"])
def test_both_images_run_as_the_contracts_numeric_user(image: str) -> None:
    stage = _trainer_image() if image == "trainer" else _stage("server")
    users = re.findall(r"^USER\s+(\S+)\s*$", stage, flags=re.M)
    assert users == [f"{contract.APP_UID}:{contract.APP_UID}"], f"the {image} image runs as {users}"


def test_the_server_image_listens_where_the_pod_sends_traffic() -> None:
    server = _stage("server")
    assert re.search(rf"^EXPOSE\s+{contract.PORT}\s+{contract.METRICS_PORT}\s*$", server, flags=re.M), "EXPOSE"
    assert re.search(rf"^ENV\s+{contract.ENV_PORT}={contract.PORT}\s*\\$", server, flags=re.M), contract.ENV_PORT
    assert re.search(rf"^\s+{contract.ENV_METRICS_PORT}={contract.METRICS_PORT}\s*$", server, flags=re.M)


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, TRAINER_DOCKERFILE], ids=["server", "trainer"])
def test_home_is_the_writable_scratch_directory(dockerfile: Path) -> None:
    # The root filesystem is read-only in the pods; only the scratch emptyDir is writable.
    assert re.search(rf"\bHOME={re.escape(contract.SCRATCH_DIR)}\b", _stages(dockerfile)["base"]), "HOME"


def test_the_server_defaults_to_the_contracts_port_and_model_mount() -> None:
    env = {contract.ENV_AUTH_USERNAME: "u", contract.ENV_AUTH_PASSWORD: "p" * 12, contract.ENV_PLAIN_HTTP: "1"}
    read = settings.from_env(env)
    assert read.port == contract.PORT
    assert read.metrics_port == contract.METRICS_PORT
    assert read.drain_seconds == contract.DRAIN_SECONDS
    assert str(read.model_dir) == contract.MODEL_MOUNT


def test_the_trainer_keeps_the_gate_code_for_the_gate() -> None:
    # The Job fails at once on EXIT_GATE (components/workloads.py); argparse's own exit
    # status for bad arguments is 2, so the digits trainer must answer those with EXIT_ERROR.
    assert len({contract.EXIT_OK, contract.EXIT_ERROR, contract.EXIT_GATE}) == 3
    with pytest.raises(SystemExit) as exit_info:
        train.build_parser().parse_args(["--no-such-flag"])
    assert exit_info.value.code == contract.EXIT_ERROR
