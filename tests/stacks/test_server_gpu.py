"""mlstack:serverGpu on the shipped cloud stacks: the servers on the GPU pool, from the CUDA image, judged by the
policy pack and the capacity rules; refused where the target, the driver, the pool or the memory cannot run them.

The server refusing to serve on a CPU: tests/app/test_execution_provider.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.target import GPU_RESOURCE, POOL_LABEL_KEY
from mlapp import contract
from policy import rules as pack
from tests.support import DEPLOYMENT, IMAGE, SharedRun, StackProblems, pod_spec, tolerates_gpu_taint
from tools import harness

# What a cloud stack needs beyond serverGpu: room for the servers at their ceiling, a surge and a retrain on
# the GPU pool, and a memory limit beside the CUDA libraries. GKE also needs the R580 driver.
GPU_SERVING: dict[str, dict[str, Any]] = {
    "dev": {"serverGpu": True, "maxReplicas": 2, "gpuMaxNodes": 4, "serverMemoryLimit": "2Gi"},
    "gke": {
        "serverGpu": True,
        "maxReplicas": 2,
        "gpuMaxNodes": 4,
        "serverMemoryLimit": "2Gi",
        "gkeGpuDriverVersion": "LATEST",
    },
}


@pytest.fixture(params=["dev", "gke"])
def gpu_stack(request: pytest.FixtureRequest, shared_run: SharedRun) -> tuple[str, harness.StackRun]:
    stack: str = request.param
    return stack, shared_run(stack, GPU_SERVING[stack])


def test_the_servers_run_on_the_gpu_pool_one_gpu_each_asking_for_cuda(gpu_stack: tuple[str, harness.StackRun]) -> None:
    stack, run = gpu_stack
    deployment = run.one(DEPLOYMENT)
    spec = pod_spec(deployment)
    assert spec["nodeSelector"][POOL_LABEL_KEY] == "gpu", stack
    assert tolerates_gpu_taint(spec["tolerations"]), spec["tolerations"]
    server = spec["containers"][0]
    assert server["resources"]["limits"][GPU_RESOURCE] == "1"
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[contract.ENV_EXECUTION_PROVIDER] == "cuda"
    if stack == "gke":  # GKE mounts the driver where the loader does not look (the trainer's rule too)
        assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    problems = harness.validate_manifest(harness.manifest(deployment), str(run.kubernetes_version))
    assert problems == [], problems


def test_the_servers_run_the_cuda_image(gpu_stack: tuple[str, harness.StackRun]) -> None:
    _, run = gpu_stack
    server = run.one(IMAGE, "-server")
    assert server.inputs["buildArgs"] == {"SERVER_REQUIREMENTS": "requirements-server-gpu.txt"}
    assert all(tag.endswith("-gpu") for tag in server.inputs["tags"]), server.inputs["tags"]
    assert server.inputs["platforms"] == ["linux/amd64"]


def test_the_policy_pack_passes_a_gpu_serving_stack(gpu_stack: tuple[str, harness.StackRun]) -> None:
    stack, run = gpu_stack
    mandatory = [
        (rule, registration.name, message)
        for registration in run.registrations.values()
        for rule, messages in pack.violations(registration.type, harness.plain(registration.inputs)).items()
        for message in messages
        if pack.RULES_BY_NAME[rule].level == "mandatory"
    ]
    assert mandatory == [], f"{stack}: {mandatory}"


def test_gpu_serving_on_a_local_cluster_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("local", serverGpu=True)
    assert problem.startswith("mlstack:serverGpu = True: this target has no GPU pool"), problem


def test_gke_s_default_driver_cannot_run_the_server_s_cuda(stack_problems: StackProblems) -> None:
    overrides = {**GPU_SERVING["gke"], "gkeGpuDriverVersion": "DEFAULT"}
    (problem,) = stack_problems("gke", **overrides)
    assert problem.startswith("mlstack:gkeGpuDriverVersion = 'DEFAULT'"), problem
    assert "LATEST" in problem


def test_a_pool_without_room_for_the_ceiling_and_a_surge_is_refused(stack_problems: StackProblems) -> None:
    # The shipped dev pool: one T4 node at most, which the retraining Job takes.
    (problem,) = stack_problems("dev", serverGpu=True, serverMemoryLimit="2Gi")
    assert problem.startswith("mlstack:gpuMaxNodes = 1: too few GPU nodes for serverGpu"), problem


def test_a_memory_limit_too_small_for_the_cuda_libraries_is_refused(stack_problems: StackProblems) -> None:
    overrides = {**GPU_SERVING["dev"], "serverMemoryLimit": "512Mi"}
    (problem,) = stack_problems("dev", **overrides)
    assert problem.startswith("mlstack:serverMemoryLimit = '512Mi': is too small for serverGpu"), problem
