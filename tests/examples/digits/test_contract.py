"""The digits trainer's own copy of the trainer contract's names (digits.contract) is the platform's
(mlapp.contract): the example imports nothing of ours, so this test is what keeps the two in step."""

from __future__ import annotations

import pytest

from digits import contract as ours
from mlapp import contract as platform


@pytest.mark.parametrize("name", sorted(n for n in vars(ours) if n.startswith("ENV_") and n != "ENV_TORCHRUN_NNODES"))
def test_every_variable_it_reads_is_the_platforms(name: str) -> None:
    assert getattr(ours, name) == getattr(platform, name), name


def test_torchruns_node_count_is_the_one_the_job_sets() -> None:
    assert platform.TORCHRUN_ENV[platform.ENV_NUM_NODES] == ours.ENV_TORCHRUN_NNODES


def test_exit_codes_files_devices_and_gate_directions_are_the_platforms() -> None:
    assert (ours.EXIT_OK, ours.EXIT_ERROR, ours.EXIT_GATE, ours.EXIT_PEER) == (
        platform.EXIT_OK, platform.EXIT_ERROR, platform.EXIT_GATE, platform.EXIT_PEER,
    )  # fmt: skip
    assert (ours.MODEL_FILE, ours.METRICS_FILE, ours.LABELS_FILE, ours.SERVING_FILE) == (
        platform.TRAINER_MODEL_FILE, platform.TRAINER_METRICS_FILE, platform.TRAINER_LABELS_FILE,
        platform.TRAINER_SERVING_FILE,
    )  # fmt: skip
    assert ours.JOB_DEVICES == platform.DEVICES
    assert ours.GATE_DIRECTIONS == platform.GATE_DIRECTIONS
    assert ours.METRICS_PATH == platform.METRICS_PATH


@pytest.mark.parametrize("text", ["accuracy>=0.9", "loss<=0.3", " rmse <= 1e-3 "])
def test_it_reads_a_gate_as_the_publisher_does(text: str) -> None:
    from mlapp.gate import Gate

    mine, theirs = ours.Gate.parse(text), Gate.parse(text)
    assert (mine.metric, mine.direction, mine.threshold) == (theirs.metric, theirs.direction, theirs.threshold)
    assert str(mine) == str(theirs)
