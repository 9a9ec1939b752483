"""The GCP GPU catalogue: impossible GPU pools fail before anything is created."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from components import gpu
from components.config import ConfigError
from tools import harness


@pytest.mark.parametrize(
    ("gpu_type", "machine_type", "count"),
    [
        ("nvidia-tesla-t4", "n1-standard-4", 1),
        ("nvidia-tesla-t4", "n1-highmem-16", 4),
        ("nvidia-tesla-v100", "n1-standard-32", 8),
        ("nvidia-tesla-p100", "n1-standard-8", 2),
        ("nvidia-tesla-p4", "n1-custom-8-30720", 4),
        ("nvidia-l4", "g2-standard-4", 1),
        ("nvidia-l4", "g2-standard-24", 2),
        ("nvidia-l4", "g2-standard-48", 4),
        ("nvidia-l4", "g2-standard-96", 8),
        ("nvidia-tesla-a100", "a2-highgpu-1g", 1),
        ("nvidia-tesla-a100", "a2-megagpu-16g", 16),
        ("nvidia-a100-80gb", "a2-ultragpu-8g", 8),
        ("nvidia-h100-80gb", "a3-highgpu-8g", 8),
    ],
)
def test_real_gcp_gpu_pools_pass(gpu_type: str, machine_type: str, count: int) -> None:
    assert gpu.check_gcp_gpu_pool(gpu_type, machine_type, count) == [], (
        gpu_type,
        machine_type,
        count,
    )


@pytest.mark.parametrize(
    ("gpu_type", "machine_type", "count", "key", "must_say"),
    [
        # T4 attaches to N1 only; the message says where it does run.
        ("nvidia-tesla-t4", "g2-standard-4", 1, "gkeGpuMachineType", "runs on N1 machines only"),
        # An unknown machine family for the GPU.
        ("nvidia-tesla-t4", "e2-standard-4", 1, "gkeGpuMachineType", "n1-standard-4"),
        # Not an N1 machine type at all, though it starts with n1.
        ("nvidia-tesla-t4", "n1-ultramem-40", 1, "gkeGpuMachineType", "n1-standard-N"),
        # 3 T4s: N1 takes 1, 2 or 4.
        ("nvidia-tesla-t4", "n1-standard-8", 3, "gkeGpuCount", "1, 2, 4"),
        # 8 is a V100 count, not a T4 one.
        ("nvidia-tesla-t4", "n1-standard-32", 8, "gkeGpuCount", "1, 2, 4"),
        # L4's count is fixed by the G2 machine type.
        ("nvidia-l4", "g2-standard-4", 2, "gkeGpuCount", "exactly 1"),
        ("nvidia-l4", "g2-standard-48", 1, "gkeGpuCount", "exactly 4"),
        # L4 on a G2 size that does not exist lists the ones that do.
        ("nvidia-l4", "g2-standard-2", 1, "gkeGpuMachineType", "g2-standard-4, g2-standard-8"),
        # A100 40GB is A2 Standard; the A2 Ultra machines carry the 80GB one.
        ("nvidia-tesla-a100", "a2-ultragpu-1g", 1, "gkeGpuMachineType", "a2-highgpu-1g"),
        ("nvidia-a100-80gb", "a2-highgpu-1g", 1, "gkeGpuMachineType", "a2-ultragpu-1g"),
        ("nvidia-h100-80gb", "n1-standard-4", 1, "gkeGpuMachineType", "a3-highgpu-8g"),
        # An unknown GPU type lists every known one.
        (
            "nvidia-tesla-k80",
            "n1-standard-4",
            1,
            "gkeGpuType",
            "nvidia-tesla-t4, nvidia-tesla-v100",
        ),
    ],
)
def test_impossible_gcp_gpu_pools_name_the_key_and_the_choices(
    gpu_type: str, machine_type: str, count: int, key: str, must_say: str
) -> None:
    problems = gpu.check_gcp_gpu_pool(gpu_type, machine_type, count)
    assert [p.key for p in problems] == [key], (gpu_type, machine_type, count, problems)
    assert must_say in problems[0].reason, problems[0]


def test_catalogue_counts_per_machine() -> None:
    """The counts the catalogue holds, for the machine types the brief names."""
    l4 = gpu.GCP_ACCELERATORS["nvidia-l4"]
    assert {m: l4.counts_for(m) for m in ("g2-standard-4", "g2-standard-32", "g2-standard-96")} == {
        "g2-standard-4": (1,),
        "g2-standard-32": (1,),
        "g2-standard-96": (8,),
    }
    assert gpu.GCP_ACCELERATORS["nvidia-tesla-v100"].counts_for("n1-standard-8") == (1, 2, 4, 8)
    assert {a.family for a in gpu.GCP_ACCELERATORS.values()} == {"n1", "g2", "a2", "a3"}


def test_bad_gpu_pool_fails_with_the_other_config_problems(
    run_stack: Callable[..., harness.StackRun],
) -> None:
    with pytest.raises(ConfigError) as raised:
        run_stack(
            "gke",
            overrides={
                "gkeGpuMachineType": "g2-standard-4",  # T4 (the stack's GPU) on G2
                "replicas": 0,  # an unrelated problem, reported in the same error
            },
        )
    problems = raised.value.problems
    assert any(p.startswith("mlstack:gkeGpuMachineType = 'g2-standard-4'") for p in problems), problems
    assert any(p.startswith("mlstack:replicas = 0") for p in problems), problems


def test_trainer_gpus_must_fit_on_one_gpu_node(run_stack: Callable[..., harness.StackRun]) -> None:
    with pytest.raises(ConfigError) as raised:
        run_stack("gke", overrides={"trainerGpus": 2})  # the stack's nodes have 1 T4
    assert raised.value.problems == [
        "mlstack:trainerGpus = 2: must be at most the GPUs of one GPU node, "
        "mlstack:gkeGpuCount (1): a pod cannot span nodes"
    ]


@pytest.mark.parametrize(
    ("overrides", "problem_start"),
    [
        ({"gcpProject": ""}, "mlstack:gcpProject = '': must be set"),
        (
            {"gcpProject": "My_Project"},
            "mlstack:gcpProject = 'My_Project': must be a GCP project ID",
        ),
        ({"gcpZone": "europe-west4-a"}, "mlstack:gcpZone = 'europe-west4-a': must be a zone of"),
        ({"gcpRegion": "central"}, "mlstack:gcpRegion = 'central': must be a GCP region"),
        ({"gkeReleaseChannel": "NIGHTLY"}, "mlstack:gkeReleaseChannel = 'NIGHTLY': must be one of"),
        ({"gkeGpuDriverVersion": "535"}, "mlstack:gkeGpuDriverVersion = '535': must be one of"),
    ],
)
def test_gcp_keys_are_validated_when_cloud_is_gcp(
    run_stack: Callable[..., harness.StackRun], overrides: dict[str, str], problem_start: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        run_stack("gke", overrides=overrides)
    assert any(p.startswith(problem_start) for p in raised.value.problems), raised.value.problems


def test_gcp_keys_are_not_judged_on_another_cloud(
    run_stack: Callable[..., harness.StackRun],
) -> None:
    result = run_stack("local", overrides={"gkeGpuType": "nvidia-tesla-k80", "gcpProject": ""})
    assert not [r for r in result.registrations.values() if r.type.startswith("gcp:")]
