"""GPU containers start under NVIDIA's container runtime, and exactly one device plugin serves each GPU node.

Findings (December 2026 review):
- "GPU containers with a read-only root filesystem may fail to start on AKS": on AKS's containerd and
  runc the runtime's hooks write the root before it is made read-only (sources in components/aks.py,
  device_plugin_security). What does stop them is a read-only mount where a hook writes
  (NVIDIA/nvidia-container-toolkit#2026): no GPU container has one, and both keep their read-only root.
- "Two device plugins on AKS": AKS runs its own only on fully managed GPU nodes; the pool asks for the
  driver only, never carries the tag that turns AKS's plugin on, and ours stays off nodes AKS manages.
"""

from __future__ import annotations

from typing import Any

import pytest

from components import aks
from components.target import GPU_RESOURCE
from mlstack import catalogue
from tests.support import DAEMONSET, JOB, STACKS, TRAIN, SharedRun, pod_spec
from tools import harness

AKS_POOL = "azure-native:containerservice:AgentPool"


def gpu_containers(run: harness.StackRun) -> list[tuple[str, dict[str, Any]]]:
    """Every container that NVIDIA's runtime sets up with GPUs: those that request one, and the device plugin
    (its image asks for every GPU through NVIDIA_VISIBLE_DEVICES=all)."""
    found = []
    for workload in [*run.of_type(JOB), *run.of_type(DAEMONSET)]:
        spec = pod_spec(workload)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            limits = (c.get("resources") or {}).get("limits") or {}
            if GPU_RESOURCE in limits or workload.type == DAEMONSET:
                found.append((f"{workload.name}/{c['name']}", c))
    return found


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@pytest.mark.parametrize("stack", STACKS)
def test_no_gpu_container_mounts_anything_where_nvidias_hooks_write(shipped: dict[str, Any], stack: str) -> None:
    containers = gpu_containers(shipped[stack])
    if stack != "local":
        assert any(TRAIN in name for name, _ in containers), f"{stack}: the training Job is not among {containers}"
    for name, c in containers:
        for mount in c.get("volumeMounts", []):
            clash = [p for p in catalogue.NVIDIA_HOOK_PATHS if under(mount["mountPath"], p)]
            assert not clash, f"{stack} {name}: {mount['mountPath']} lies where NVIDIA's runtime writes ({clash})"


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_gpu_containers_keep_their_read_only_root(shipped: dict[str, Any], stack: str) -> None:
    containers = gpu_containers(shipped[stack])
    assert containers, stack
    for name, c in containers:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{stack} {name}"


def test_the_device_plugin_is_the_only_one_on_an_aks_gpu_node(shared_run: SharedRun) -> None:
    run = shared_run("dev")
    pool = harness.plain(run.one(AKS_POOL).inputs)
    # The driver only: AKS's own plugin comes with a fully managed pool or the VM tag, neither asked for.
    assert pool["gpuProfile"] == {"driver": "Install"}, pool.get("gpuProfile")
    assert aks.MANAGED_GPU_TAG not in (pool.get("tags") or {})
    (plugin,) = run.of_type(DAEMONSET)
    terms = pod_spec(plugin)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": aks.MANAGED_GPU_NODE_LABEL, "operator": "DoesNotExist"}]}
    ]


@pytest.mark.parametrize("stack", ["local", "gke"])
def test_only_aks_runs_a_device_plugin_of_ours(shipped: dict[str, Any], stack: str) -> None:
    """GKE installs NVIDIA's plugin itself (nvidia-gpu-device-plugin); a local cluster has no GPU."""
    assert shipped[stack].of_type(DAEMONSET) == [], stack
