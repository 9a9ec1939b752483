"""Pod Security Admission: the app's namespace enforces "restricted", and every pod of every stack passes it.

Finding (security review): no Pod Security Admission label on the Namespace, although our pods
would pass "restricted". The checker is the policy pack's (policy/rules.py
``pod_security_restricted``), written from the admission plugin's own checks for v1.33; its
controls one by one: tests/pure/test_policy_rules.py.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import pytest

from policy import rules
from tests.support import DAEMONSET, DEPLOYMENT, JOB, PUBLISH, STACKS, TRAIN, pod_spec
from tools import harness

Runs = dict[str, harness.StackRun]
NAMESPACE: Final = "kubernetes:core/v1:Namespace"


@pytest.mark.parametrize("stack", STACKS)
def test_the_app_namespace_enforces_restricted_as_of_the_validated_version(shipped: Runs, stack: str) -> None:
    run = shipped[stack]
    labels = harness.manifest(run.one(NAMESPACE))["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Pinned to the version the manifests are validated against: an upgrade cannot tighten it under running pods.
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{run.kubernetes_version}"
    for mode in ("warn", "audit"):  # a coming change shows as a warning and in the audit log first
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_in_the_app_namespace_passes_restricted(shipped: Runs, stack: str) -> None:
    run = shipped[stack]
    namespace = harness.manifest(run.one(NAMESPACE))["metadata"]["name"]
    judged = 0
    for type_ in (JOB, DEPLOYMENT, DAEMONSET):
        for registration in run.of_type(type_):
            obj = harness.manifest(registration)
            if obj["metadata"]["namespace"] != namespace:
                continue
            annotations = obj["spec"]["template"]["metadata"].get("annotations")
            assert rules.pod_security_restricted(pod_spec(registration), annotations) == [], registration.urn
            judged += 1
    assert judged == 3, "the training Job, the publish Job and the Deployment"


def test_the_device_plugin_runs_outside_any_namespace_that_enforces_a_level(shipped: Runs) -> None:
    """A hostPath and root: privileged by the standard, so it lives in kube-system (no label of ours)."""
    run = shipped["dev"]
    plugin = run.one(DAEMONSET)
    assert harness.manifest(plugin)["metadata"]["namespace"] == "kube-system"
    assert rules.pod_security_restricted(pod_spec(plugin)) != []
    labelled = {harness.manifest(r)["metadata"]["name"] for r in run.of_type(NAMESPACE)}
    assert "kube-system" not in labelled


# The GCS FUSE CSI driver's webhook adds its sidecar to our GKE pods at admission, before Pod Security
# Admission judges them, so the sidecar must pass too. As the webhook injects it on Kubernetes >= 1.29:
# a native sidecar (an init container with restartPolicy Always), securityContext from GetSecurityContext
# ("ensures the sidecar ... follows Restricted Pod Security Standard"), and emptyDir volumes
# (GoogleCloudPlatform/gcs-fuse-csi-driver pkg/webhook/sidecar_spec.go, injection.go; the lower-case
# "drop: all" that once broke it: gcs-fuse-csi-driver#52).
GCSFUSE_SIDECAR: Final = {
    "name": "gke-gcsfuse-sidecar",
    "image": "gke.gcr.io/gcs-fuse-csi-driver-sidecar-mounter@sha256:" + "0" * 64,
    "restartPolicy": "Always",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
    },
    "volumeMounts": [{"name": "gke-gcsfuse-tmp", "mountPath": "/gcsfuse-tmp"}],
}
GCSFUSE_VOLUMES: Final[list[dict[str, Any]]] = [
    {"name": n, "emptyDir": {}} for n in ("gke-gcsfuse-tmp", "gke-gcsfuse-buffer", "gke-gcsfuse-cache")
]


def with_gcsfuse_sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    injected = copy.deepcopy(spec)
    injected["initContainers"] = [GCSFUSE_SIDECAR, *injected.get("initContainers", [])]
    injected["volumes"] = [*injected.get("volumes", []), *GCSFUSE_VOLUMES]
    return injected


@pytest.mark.parametrize(("type_", "name_suffix"), [(JOB, TRAIN), (JOB, PUBLISH), (DEPLOYMENT, "")])
def test_gke_pods_pass_restricted_with_the_sidecar_the_gcs_fuse_webhook_injects(
    shipped: Runs, type_: str, name_suffix: str
) -> None:
    spec = pod_spec(shipped["gke"].one(type_, name_suffix))
    assert rules.pod_security_restricted(with_gcsfuse_sidecar(spec)) == []
    # Not vacuous: the sidecar of the NUMA-pinning option (seccomp Unconfined, CAP_SYS_NICE) would be refused.
    pinned = with_gcsfuse_sidecar(spec)
    pinned["initContainers"][0] = copy.deepcopy(GCSFUSE_SIDECAR)
    pinned["initContainers"][0]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    pinned["initContainers"][0]["securityContext"]["capabilities"]["add"] = ["CAP_SYS_NICE"]
    found = rules.pod_security_restricted(pinned)
    assert any("gke-gcsfuse-sidecar: seccompProfile.type must not be Unconfined" in f for f in found), found
    assert any("CAP_SYS_NICE" in f for f in found), found
