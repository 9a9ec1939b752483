"""The AKS target's pure builders and argument check, called without mocks.

The component under mocks: tests/components/test_aks.py; the shipped dev stack: tests/stacks/test_aks.py.
"""

from __future__ import annotations

import base64
import dataclasses
import re

from components import aks
from components.target import GPU_POOL, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL_KEY
from mlstack.problems import format_problem
from tests.args import AKS_ARGS
from tests.support import tolerates_gpu_taint
from tools import mocks_azure

GPU_TAINT = f"{GPU_TAINT_KEY}={GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}"
SPOT_TAINT = "kubernetes.azure.com/scalesetpriority=spot:NoSchedule"


def test_taints_are_written_the_way_aks_reports_them() -> None:
    assert [aks.node_taint(t) for t in aks.gpu_pool_taints(spot=True)] == [GPU_TAINT, SPOT_TAINT]
    assert [aks.node_taint(t) for t in aks.gpu_pool_taints(spot=False)] == [GPU_TAINT]


def test_gpu_scheduling_comes_from_the_catalogue_and_tolerates_every_pool_taint() -> None:
    scheduling = aks.gpu_scheduling(AKS_ARGS)
    assert (scheduling.gpu_model, scheduling.gpus_per_node) == ("nvidia-a100-80gb", 1)
    assert scheduling.node_selector == {POOL_LABEL_KEY: GPU_POOL}
    spot = aks.gpu_scheduling(dataclasses.replace(AKS_ARGS, gpu_spot=True))
    assert tolerates_gpu_taint([dataclasses.asdict(t) for t in spot.tolerations])
    assert [aks.node_taint(t) for t in spot.tolerations] == [GPU_TAINT, SPOT_TAINT], "the Spot taint too"


def test_device_plugin_runs_on_the_gpu_pool_only_as_a_critical_pod() -> None:
    scheduling = aks.gpu_scheduling(dataclasses.replace(AKS_ARGS, gpu_spot=True))
    spec = aks.device_plugin_spec("nvcr.io/nvidia/k8s-device-plugin:v0.17.4", scheduling)
    pod = spec.template.spec
    assert pod.node_selector == {POOL_LABEL_KEY: GPU_POOL}
    tolerations = [
        {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect} for t in pod.tolerations
    ]
    assert tolerations == [dataclasses.asdict(t) for t in scheduling.tolerations]
    assert pod.priority_class_name == "system-node-critical"
    assert spec.selector.match_labels == spec.template.metadata.labels == aks.DEVICE_PLUGIN_MATCH
    (plugin,) = pod.containers
    (mount,) = plugin.volume_mounts
    assert mount.mount_path == aks.DEVICE_PLUGIN_DIR == pod.volumes[0].host_path.path


def test_device_plugin_is_locked_down_as_far_as_its_socket_allows() -> None:
    """Finding: mutable tag, a service-account token, no seccomp profile, a writable root filesystem."""
    spec = aks.device_plugin_spec(aks.DEVICE_PLUGIN_IMAGE, aks.gpu_scheduling(AKS_ARGS))
    pod = spec.template.spec
    (plugin,) = pod.containers
    context = plugin.security_context
    assert re.fullmatch(r"nvcr\.io/nvidia/k8s-device-plugin:v0\.17\.4@sha256:[0-9a-f]{64}", plugin.image)
    assert pod.automount_service_account_token is False, "the plugin never calls the API: no token"
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert context.read_only_root_filesystem is True
    assert context.allow_privilege_escalation is False
    assert context.capabilities.drop == ["ALL"]
    assert context.privileged is None
    assert context.capabilities.add is None
    # Nothing writable but the kubelet's socket directory.
    assert [v.name for v in pod.volumes] == ["device-plugin"]


def test_device_plugin_exemptions_say_why() -> None:
    meta = aks.device_plugin_meta()
    assert meta.namespace == "kube-system"
    assert meta.annotations["mlstack.io/policy-exempt"] == "non-root,pod-security-restricted"
    assert "runs as root with a hostPath" in meta.annotations["mlstack.io/policy-exempt-reason"]


def test_registry_name_is_letters_and_digits() -> None:
    assert aks.registry_name("ml-stack_dev", "a1b2c3d4") == "mlstackdeva1b2c3d4"
    assert len(aks.registry_name("x" * 80, "a1b2c3d4")) == 50


def test_acr_pull_is_the_built_in_role() -> None:
    assert aks.role_definition_id("sub") == (
        "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
    )


def test_user_kubeconfig_is_decoded() -> None:
    text = mocks_azure.mock_user_kubeconfig("c")
    assert aks.decode_kubeconfig(base64.b64encode(text.encode()).decode()) == text


def test_sound_arguments_pass() -> None:
    assert aks.check_args(AKS_ARGS) == []


def test_every_bad_argument_is_named_by_its_config_key() -> None:
    bad = dataclasses.replace(
        AKS_ARGS, gpu_vm_size="Standard_E8s_v5", gpu_max_nodes=0, upgrade_channel="weekly", spot_max_price=0.0
    )
    messages = [format_problem(p) for p in aks.check_args(bad)]
    assert [m.split(" ", 1)[0] for m in messages] == [
        "mlstack:aksGpuVmSize", "mlstack:aksUpgradeChannel", "mlstack:gpuMaxNodes", "mlstack:aksSpotMaxPrice"
    ]  # fmt: skip
    assert messages[0].startswith("mlstack:aksGpuVmSize = 'Standard_E8s_v5': has no GPU: the E series")
    assert "mlstack:aksUpgradeChannel = 'weekly': must be one of none, patch, stable, rapid, node-image" in messages
    assert "mlstack:gpuMaxNodes = 0: must be between 1 and 100" in messages
