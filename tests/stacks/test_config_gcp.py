"""The GCP keys as the GKE stack's config meets them: impossible GPU pools fail before anything is created.

The rules alone: tests/pure/test_rules.py.
"""

from __future__ import annotations

import pytest

from tests.support import SharedRun, StackProblems


def test_bad_gpu_pool_fails_with_the_other_config_problems(stack_problems: StackProblems) -> None:
    problems = stack_problems("gke", gkeGpuMachineType="g2-standard-4", replicas=0)  # T4 (the stack's GPU) on G2
    assert any(p.startswith("mlstack:gkeGpuMachineType = 'g2-standard-4'") for p in problems), problems
    assert any(p.startswith("mlstack:replicas = 0") for p in problems), problems


def test_trainer_gpus_must_fit_on_one_gpu_node(stack_problems: StackProblems) -> None:
    assert stack_problems("gke", trainerGpus=2) == [  # the stack's nodes have 1 T4
        "mlstack:trainerGpus = 2: a node of the GPU pool carries 1 nvidia-tesla-t4 GPU(s) and a pod cannot span "
        "nodes, so the trainer can request at most 1"
    ]


@pytest.mark.parametrize(
    ("overrides", "problem_start"),
    [
        ({"gcpProject": ""}, "mlstack:gcpProject = '': must be set"),
        ({"gcpProject": "My_Project"}, "mlstack:gcpProject = 'My_Project': must be a GCP project ID"),
        ({"gcpZone": "europe-west4-a"}, "mlstack:gcpZone = 'europe-west4-a': must be a zone of"),
        ({"gcpRegion": "central"}, "mlstack:gcpRegion = 'central': must be a GCP region"),
        ({"gkeReleaseChannel": "NIGHTLY"}, "mlstack:gkeReleaseChannel = 'NIGHTLY': must be one of"),
        ({"gkeGpuDriverVersion": "535"}, "mlstack:gkeGpuDriverVersion = '535': must be one of"),
        ({"gkeGpuType": "nvidia-tesla-k80"}, "mlstack:gkeGpuType = 'nvidia-tesla-k80': unknown GPU type"),
    ],
)
def test_gcp_keys_are_validated_when_cloud_is_gcp(
    stack_problems: StackProblems, overrides: dict[str, str], problem_start: str
) -> None:
    problems = stack_problems("gke", **overrides)
    assert any(p.startswith(problem_start) for p in problems), problems


def test_gcp_keys_are_not_judged_on_another_cloud(shared_run: SharedRun) -> None:
    result = shared_run("local", overrides={"gkeGpuType": "nvidia-tesla-k80", "gcpProject": ""})
    assert not [r for r in result.registrations.values() if r.type.startswith("gcp:")]
