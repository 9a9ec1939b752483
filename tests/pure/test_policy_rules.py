"""The policy pack's rules (policy/rules.py) as plain functions, where no stack is needed to judge them.

The rules on the shipped stacks: tests/stacks/test_policy.py; the pack as the
engine runs it: tests/project/test_policy_pack.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from components import target
from mlstack.clouds import azure
from policy import rules
from tests.support import tolerates_gpu_taint


@pytest.mark.parametrize(
    ("toleration", "tolerates"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}, True),
        ({"key": "nvidia.com/gpu", "value": "present"}, True),  # Equal and every effect by default
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # tolerates every taint
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Exists"}, False),
    ],
)
def test_toleration_matching(toleration: dict[str, str], tolerates: bool) -> None:
    assert rules.tolerates_gpu_taint(toleration) is tolerates
    # The tests' own matcher is the pack's, over a pod's list of tolerations.
    assert tolerates_gpu_taint([{"key": "other", "operator": "Exists"}, toleration]) is tolerates


def test_no_toleration_tolerates_nothing() -> None:
    assert not tolerates_gpu_taint(None)
    assert not tolerates_gpu_taint([])


def test_every_azure_gpu_size_of_the_catalogue_is_seen_as_a_gpu_size() -> None:
    for size in azure.AZURE_GPU_SIZES:
        assert rules.AKS_GPU_VM_SIZE.match(size), size
    for size in ("Standard_D4s_v5", "Standard_B2s", "Standard_E8s_v5"):
        assert not rules.AKS_GPU_VM_SIZE.match(size), size


def test_the_pack_agrees_with_the_targets_taint_and_pool_label() -> None:
    """The pack runs in its own venv and cannot import the program: its copies must stay equal."""
    assert (rules.GPU_TAINT_KEY, rules.GPU_TAINT_VALUE, rules.GPU_TAINT_EFFECT) == (
        target.GPU_TAINT_KEY,
        target.GPU_TAINT_VALUE,
        target.GPU_TAINT_EFFECT,
    )
    assert rules.GPU_RESOURCE == target.GPU_RESOURCE
    assert rules.AKS_GPU_POOL_LABEL == (target.POOL_LABEL_KEY, target.GPU_POOL)


@pytest.mark.parametrize("key", ["MLAPP_LABELS_FILE", "tokenizer.json", "MLAPP_AUTH_USERNAME", "keyboard", "secretary"])
def test_config_map_key_that_only_resembles_a_secret_passes(key: str) -> None:
    assert not rules.looks_secret(key), key


# --- the restricted Pod Security Standard, control by control ------------------------------------

RESTRICTED_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "app",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "ports": [{"containerPort": 8080}],
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "models", "persistentVolumeClaim": {"claimName": "m"}}],
}


def _broken(path: str, value: object) -> dict[str, Any]:
    """RESTRICTED_POD with one field set: ``path`` is dotted, ``c`` stands for the first container."""
    import copy

    pod = copy.deepcopy(RESTRICTED_POD)
    *parents, last = path.split(".")
    node = pod
    for part in parents:
        node = node["containers"][0] if part == "c" else node.setdefault(part, {})
    node[last] = value
    return pod


def test_a_restricted_pod_passes() -> None:
    assert rules.pod_security_restricted(RESTRICTED_POD) == []


@pytest.mark.parametrize(
    ("path", "value", "control"),
    [
        ("hostNetwork", True, "Host Namespaces"),
        ("hostPID", True, "Host Namespaces"),
        ("hostIPC", True, "Host Namespaces"),
        ("c.securityContext.privileged", True, "Privileged Containers"),
        ("c.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "Capabilities"),
        ("c.securityContext.capabilities", {"drop": ["NET_RAW"]}, "Capabilities"),
        ("c.securityContext.capabilities", {"drop": ["all"]}, "Capabilities"),  # gcs-fuse-csi-driver#52
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "Volume Types"),
        ("volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}], "Volume Types"),
        ("c.ports", [{"containerPort": 80, "hostPort": 80}], "Host Ports"),
        ("c.securityContext.appArmorProfile", {"type": "Unconfined"}, "AppArmor"),
        ("c.securityContext.seLinuxOptions", {"type": "spc_t"}, "SELinux"),
        ("c.securityContext.seLinuxOptions", {"user": "root"}, "SELinux"),
        ("c.securityContext.procMount", "Unmasked", "/proc Mount Type"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "Seccomp"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "Sysctls"),
        ("c.securityContext.allowPrivilegeEscalation", True, "Privilege Escalation"),
        ("securityContext.runAsNonRoot", False, "Running as Non-root"),
        ("c.securityContext.runAsNonRoot", False, "Running as Non-root"),
        ("securityContext.runAsUser", 0, "Running as Non-root user"),
        ("c.securityContext.runAsUser", 0, "Running as Non-root user"),
        ("c.securityContext.windowsOptions", {"hostProcess": True}, "HostProcess"),
    ],
)
def test_each_control_of_the_standard_is_enforced(path: str, value: object, control: str) -> None:
    found = rules.pod_security_restricted(_broken(path, value))
    assert any(f.endswith(f"({control})") for f in found), found


def test_privilege_escalation_must_be_said_false_not_left_out() -> None:
    pod = _broken("c.securityContext", {"capabilities": {"drop": ["ALL"]}})
    assert rules.pod_security_restricted(pod) == [
        "container app: allowPrivilegeEscalation must be false (Privilege Escalation)"
    ]


def test_seccomp_on_the_container_stands_in_for_the_pods() -> None:
    pod = _broken("securityContext", {"runAsNonRoot": True})
    assert any("(Seccomp)" in f for f in rules.pod_security_restricted(pod))
    pod["containers"][0]["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    assert rules.pod_security_restricted(pod) == []


def test_init_and_ephemeral_containers_are_judged_too() -> None:
    pod = _broken("initContainers", [{"name": "setup", "securityContext": {"capabilities": {"drop": ["ALL"]}}}])
    assert rules.pod_security_restricted(pod) == [
        "container setup: allowPrivilegeEscalation must be false (Privilege Escalation)"
    ]


def test_the_apparmor_annotation_form_is_judged() -> None:
    bad = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    assert any("(AppArmor)" in f for f in rules.pod_security_restricted(RESTRICTED_POD, bad))
    good = {"container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}
    assert rules.pod_security_restricted(RESTRICTED_POD, good) == []


# --- label selectors, as NetworkPolicies and the pack read them ------------------------------------


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({}, True),  # the empty selector selects every pod
        ({"matchLabels": {"app": "ml"}}, True),
        ({"matchLabels": {"app": "ml", "tier": "web"}}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["ml", "x"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["ml"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
        ({"matchLabels": {"app": "ml"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
    ],
)
def test_label_selectors(selector: dict[str, Any], selected: bool) -> None:
    assert rules.selector_matches(selector, {"app": "ml"}) is selected
