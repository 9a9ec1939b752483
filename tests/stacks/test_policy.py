"""The policy pack (policy/) on the shipped stacks: every stack passes it, and every rule catches what it forbids.

The rules see what the engine sends a policy pack: each resource's inputs with
camelCase names and secrets unwrapped, here taken from the program run under
the mocks. Each crafted case starts from a real resource of a stack and breaks
one thing. The rules alone: tests/pure/test_policy_rules.py; the pack as the
engine runs it: tests/project/test_policy_pack.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components import target
from policy import rules
from tests.support import (
    CONFIGMAP,
    DAEMONSET,
    DEPLOYMENT,
    JOB,
    PUBLISH,
    SECRET,
    SERVICE,
    STACKS,
    TRAIN,
    SharedRun,
    in_pack_venv,
)
from tools import harness

# Prebuilt images named by tag only: the config accepts them, the pack must not.
TAG_ONLY = {"trainerImage": "registry.example.com/ml/trainer:1.0", "serverImage": "registry.example.com/ml/server:1.0"}
# What the pack may advise on a shipped stack: the local stack has no source ranges (kind).
EXPECTED_ADVICE = {"local": {("load-balancer-source-ranges", "mlstack-service")}, "dev": set(), "gke": set()}

Runs = dict[str, harness.StackRun]


def props_of(run: harness.StackRun, type_: str, name_suffix: str = "") -> dict[str, Any]:
    """A resource's inputs as the engine hands them to a policy pack (a copy, free to break)."""
    return copy.deepcopy(harness.plain(run.one(type_, name_suffix).inputs))


def findings(run: harness.StackRun) -> list[tuple[str, str, str, str]]:
    """(level, rule, resource name, message) for every violation in a stack; "stack" names a stack rule's."""
    per_resource = [
        (rules.RULES_BY_NAME[rule].level, rule, registration.name, message)
        for registration in run.registrations.values()
        for rule, messages in rules.violations(registration.type, harness.plain(registration.inputs)).items()
        for message in messages
    ]
    whole = [
        (rules.RULES_BY_NAME[rule].level, rule, "stack", message)
        for rule, messages in rules.stack_violations(resources(run)).items()
        for message in messages
    ]
    return [*per_resource, *whole]


def resources(run: harness.StackRun, drop: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The stack's resources as a stack rule sees them, (type, props) copies free to break; ``drop``: names
    (registration names ending so) of resources to leave out."""
    return [
        (registration.type, copy.deepcopy(harness.plain(registration.inputs)))
        for registration in run.registrations.values()
        if not any(registration.name.endswith(suffix) for suffix in drop)
    ]


def of_kind(found: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [props for type_, props in found if rules.kubernetes_kind(type_) == kind]


# What the restricted Pod Security Standard forbids overlaps the non-root rule: a breach of one is
# a breach of both, each in its own words.
PSA = "pod-security-restricted"


def only(rule: str, type_: str, props: dict[str, Any], also: tuple[str, ...] = ()) -> list[str]:
    """The messages of ``rule``, after checking that no other rule (but those ``also`` named) fired."""
    found = rules.violations(type_, props)
    assert set(found) <= {rule, *also}, f"{type_}: other rules fired too: {found}"
    return found.get(rule, [])


# --- the shipped stacks ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes_the_pack(shipped: Runs, stack: str) -> None:
    found = findings(shipped[stack])
    mandatory = [f"{name}: {message}" for level, _, name, message in found if level == "mandatory"]
    assert mandatory == [], f"{stack} breaks the pack:\n" + "\n".join(mandatory)
    advice = {(rule, name) for level, rule, name, _ in found if level == "advisory"}
    assert advice == EXPECTED_ADVICE[stack]


@pytest.mark.parametrize("stack", STACKS)
def test_the_pack_judges_every_workload_of_a_stack(shipped: Runs, stack: str) -> None:
    """Not vacuous: the two Jobs and the Deployment hold a pod spec the rules read, with containers."""
    run = shipped[stack]
    for type_, suffix in ((JOB, TRAIN), (JOB, PUBLISH), (DEPLOYMENT, "")):
        spec = rules.pod_spec(type_, props_of(run, type_, suffix))
        assert spec is not None, f"{stack}: no pod spec found in the {type_}{suffix}"
        assert [c["image"] for c in rules.containers(spec)], f"{stack}: no containers in the {type_}{suffix}"


def test_tag_only_prebuilt_images_are_caught(shared_run: SharedRun) -> None:
    """Prebuilt images named by a tag the registry can move: the digest rule must see them."""
    found = findings(shared_run("dev", overrides=TAG_ONLY))
    caught = {(rule, name) for _, rule, name, _ in found}
    # The publish Job runs the server image: it is caught there too.
    assert caught == {
        ("image-digest", "mlstack-train"),
        ("image-digest", "mlstack-publish"),
        ("image-digest", "mlstack-server"),
    }


# --- GPU pods tolerate the GPU taint ------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_gpu_pod_without_the_gpu_toleration_is_caught(shipped: Runs, stack: str) -> None:
    job = props_of(shipped[stack], JOB, TRAIN)
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    spec["tolerations"] = [t for t in spec["tolerations"] if t["key"] != target.GPU_TAINT_KEY]
    (message,) = only("gpu-pods-tolerate-gpu-taint", JOB, job)
    assert "container(s) trainer request nvidia.com/gpu" in message
    assert "add the toleration {key: nvidia.com/gpu, operator: Equal, value: present, effect: NoSchedule}" in message


def test_pod_without_a_gpu_needs_no_gpu_toleration(shipped: Runs) -> None:
    job = props_of(shipped["local"], JOB, TRAIN)
    assert "tolerations" not in job["spec"]["template"]["spec"]
    assert only("gpu-pods-tolerate-gpu-taint", JOB, job) == []


# --- GPU pools carry the GPU taint ----------------------------------------------------------


def test_aks_gpu_pool_without_the_taint_is_caught(shipped: Runs) -> None:
    pool = props_of(shipped["dev"], rules.AKS_AGENT_POOL)
    pool["nodeTaints"] = ["kubernetes.azure.com/scalesetpriority=spot:NoSchedule"]
    (message,) = only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool)
    assert message.startswith("AgentPool gpu (Standard_NC4as_T4_v3) is a GPU pool without the GPU taint")
    assert "add 'nvidia.com/gpu=present:NoSchedule' to nodeTaints" in message


def test_aks_pool_labelled_gpu_is_a_gpu_pool_whatever_its_size(shipped: Runs) -> None:
    pool = props_of(shipped["dev"], rules.AKS_AGENT_POOL)
    pool["vmSize"] = "Standard_D4s_v5"
    del pool["nodeTaints"]
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool)
    del pool["nodeLabels"]
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool) == []


def test_aks_inline_gpu_pool_without_the_taint_is_caught(shipped: Runs) -> None:
    cluster = props_of(shipped["dev"], rules.AKS_MANAGED_CLUSTER)
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_MANAGED_CLUSTER, cluster) == []  # the system pool
    cluster["agentPoolProfiles"].append({"name": "gpu2", "vmSize": "Standard_NC6s_v3", "count": 0})
    (message,) = only("gpu-pools-carry-gpu-taint", rules.AKS_MANAGED_CLUSTER, cluster)
    assert message.startswith("ManagedCluster inline pool gpu2 (Standard_NC6s_v3) is a GPU pool")


def test_gke_gpu_pool_without_the_taint_is_caught(shipped: Runs) -> None:
    pool = props_of(shipped["gke"], rules.GKE_NODE_POOL, "-gpu")
    pool["nodeConfig"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}]
    (message,) = only("gpu-pools-carry-gpu-taint", rules.GKE_NODE_POOL, pool)
    assert "has guest accelerators but no GPU taint" in message
    assert "nodeConfig.taints {key: nvidia.com/gpu, value: present, effect: NO_SCHEDULE}" in message
    system = props_of(shipped["gke"], rules.GKE_NODE_POOL, "-system")
    assert "taints" not in system["nodeConfig"]
    assert only("gpu-pools-carry-gpu-taint", rules.GKE_NODE_POOL, system) == []


# --- Deployments: probes and limits -----------------------------------------------------------


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_deployment_without_a_probe_is_caught(shipped: Runs, probe: str) -> None:
    deployment = props_of(shipped["dev"], DEPLOYMENT)
    del deployment["spec"]["template"]["spec"]["containers"][0][probe]
    (message,) = only("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert f"container server has no {probe}" in message


@pytest.mark.parametrize("resource", ["cpu", "memory"])
def test_deployment_without_a_limit_is_caught(shipped: Runs, resource: str) -> None:
    deployment = props_of(shipped["gke"], DEPLOYMENT)
    del deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][resource]
    (message,) = only("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert f"container server has no {resource} limit: set resources.limits.{resource}" in message


# --- non-root, no privilege escalation ----------------------------------------------------------


def test_pod_that_may_run_as_root_is_caught(shipped: Runs) -> None:
    deployment = props_of(shipped["local"], DEPLOYMENT)
    spec = deployment["spec"]["template"]["spec"]
    del spec["securityContext"]["runAsNonRoot"]
    assert only("non-root", DEPLOYMENT, deployment) == [], "the container's own runAsNonRoot is enough"
    del spec["containers"][0]["securityContext"]["runAsNonRoot"]
    (message,) = only("non-root", DEPLOYMENT, deployment, also=(PSA,))
    assert "container server: runAsNonRoot must be true" in rules.violations(DEPLOYMENT, deployment)[PSA][0]
    assert "container server may run as root: set securityContext.runAsNonRoot: true" in message


def test_container_that_overrides_the_pods_non_root_is_caught(shipped: Runs) -> None:
    job = props_of(shipped["dev"], JOB, TRAIN)
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    (message,) = only("non-root", JOB, job, also=(PSA,))
    assert "container trainer may run as root" in message


def test_privilege_escalation_is_caught(shipped: Runs) -> None:
    job = props_of(shipped["gke"], JOB, TRAIN)
    context = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    del context["allowPrivilegeEscalation"]
    (message,) = only("non-root", JOB, job, also=(PSA,))
    assert "may gain privileges: set securityContext.allowPrivilegeEscalation: false" in message
    context["allowPrivilegeEscalation"] = False
    context["privileged"] = True
    (message,) = only("non-root", JOB, job, also=(PSA,))
    assert "is privileged" in message


# --- images pinned by digest ---------------------------------------------------------------------


def test_image_without_a_digest_is_caught(shipped: Runs) -> None:
    deployment = props_of(shipped["dev"], DEPLOYMENT)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "registry.example.com/ml/server:1.0"
    (message,) = only("image-digest", DEPLOYMENT, deployment)
    assert "runs image 'registry.example.com/ml/server:1.0', not pinned by digest" in message
    container["image"] = "registry.example.com/ml/server@sha256:abc"  # not a digest
    assert only("image-digest", DEPLOYMENT, deployment)
    container["image"] = rules.UNKNOWN  # a built image during a first preview: judged on `up`
    assert only("image-digest", DEPLOYMENT, deployment) == []


# --- ConfigMaps hold no secrets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["DB_PASSWORD", "passwd", "apiKey", "API-KEY", "tls.private_key", "AUTH_TOKEN", "aws_secret", "credentials"]
)
def test_config_map_key_that_looks_secret_is_caught(shipped: Runs, key: str) -> None:
    config_map = props_of(shipped["dev"], CONFIGMAP, "-env")
    config_map["data"][key] = "x"
    (message,) = only("configmaps-hold-no-secrets", CONFIGMAP, config_map)
    assert f"key {key!r} looks like a secret" in message
    assert "move it to the basic-auth Secret" in message


# --- Secret types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret_type", ["Opaque", None, "kubernetes.io/dockerconfigjson"])
def test_secret_of_another_type_is_caught(shipped: Runs, secret_type: str | None) -> None:
    secret = props_of(shipped["gke"], SECRET, "-basic-auth")
    assert secret["type"] == "kubernetes.io/basic-auth"
    if secret_type is None:
        del secret["type"]
    else:
        secret["type"] = secret_type
    (message,) = only("secret-types", SECRET, secret)
    shown = secret_type or "Opaque (no type given)"
    assert f"is of type {shown}: mlstack ships only kubernetes.io/basic-auth, kubernetes.io/tls" in message


def test_the_tls_secret_is_of_a_type_the_pack_allows(shipped: Runs) -> None:
    secret = props_of(shipped["gke"], SECRET, "-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert only("secret-types", SECRET, secret) == []


# --- advisory: LoadBalancer source ranges, GPU pools from zero -----------------------------------------


def test_load_balancer_open_to_everyone_is_advised(shipped: Runs) -> None:
    service = props_of(shipped["dev"], SERVICE, "-service")
    service["spec"]["loadBalancerSourceRanges"] = []
    (message,) = only("load-balancer-source-ranges", SERVICE, service)
    assert "set mlstack:allowedSourceRanges" in message
    assert rules.RULES_BY_NAME["load-balancer-source-ranges"].level == "advisory"
    service["spec"]["type"] = "ClusterIP"
    assert only("load-balancer-source-ranges", SERVICE, service) == []


def test_aks_gpu_pool_above_zero_is_advised(shipped: Runs) -> None:
    pool = props_of(shipped["dev"], rules.AKS_AGENT_POOL)
    pool["minCount"] = 1.0
    (message,) = only("gpu-pools-scale-to-zero", rules.AKS_AGENT_POOL, pool)
    assert message.startswith("AgentPool gpu: minCount is 1.0, so GPU nodes are paid for while nothing trains")
    pool["minCount"] = 0.0
    pool["enableAutoScaling"] = False
    pool["count"] = 2.0
    (message,) = only("gpu-pools-scale-to-zero", rules.AKS_AGENT_POOL, pool)
    assert "autoscaling is off with count 2.0" in message
    assert rules.RULES_BY_NAME["gpu-pools-scale-to-zero"].level == "advisory"


@pytest.mark.parametrize("field", ["totalMinNodeCount", "minNodeCount"])
def test_gke_gpu_pool_above_zero_is_advised(shipped: Runs, field: str) -> None:
    pool = props_of(shipped["gke"], rules.GKE_NODE_POOL, "-gpu")
    pool["autoscaling"].pop("totalMinNodeCount")
    pool["autoscaling"][field] = 1.0
    (message,) = only("gpu-pools-scale-to-zero", rules.GKE_NODE_POOL, pool)
    assert f"{field} is 1.0" in message
    assert "autoscale from 0 (mlstack:gpuMinNodes: 0)" in message


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_the_config_that_keeps_a_gpu_node_is_advised(shared_run: SharedRun, stack: str) -> None:
    found = findings(shared_run(stack, overrides={"gpuMinNodes": 1}))
    assert {(level, rule) for level, rule, _, _ in found} == {("advisory", "gpu-pools-scale-to-zero")}, stack


# --- exemptions --------------------------------------------------------------------------------------


def test_device_plugin_exemptions_are_explained_and_limited(shipped: Runs) -> None:
    plugin = props_of(shipped["dev"], DAEMONSET)
    assert plugin["metadata"]["annotations"][rules.EXEMPT_ANNOTATION] == f"non-root,{PSA}"
    assert rules.violations(DAEMONSET, plugin) == {}
    # Only the named rules: a GPU request without the toleration, or a tag for a digest, would still be caught.
    plugin["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    plugin["spec"]["template"]["spec"]["tolerations"] = []
    plugin["spec"]["template"]["spec"]["containers"][0]["image"] = "nvcr.io/nvidia/k8s-device-plugin:v0.17.4"
    assert set(rules.violations(DAEMONSET, plugin)) == {"gpu-pods-tolerate-gpu-taint", "image-digest"}
    plugin = props_of(shipped["dev"], DAEMONSET)
    del plugin["metadata"]["annotations"][rules.EXEMPT_REASON_ANNOTATION]
    found = rules.violations(DAEMONSET, plugin)
    assert set(found) == {"non-root", PSA}
    assert found[PSA][0].startswith(f"exemption from non-root, {PSA} has no reason")
    assert "volume device-plugin: type hostPath is not allowed" in found[PSA][1]


def test_exemption_naming_an_unknown_rule_exempts_nothing(shipped: Runs) -> None:
    plugin = props_of(shipped["dev"], DAEMONSET)
    plugin["metadata"]["annotations"][rules.EXEMPT_ANNOTATION] = "non-root,pod-security-restrictd"
    found = rules.violations(DAEMONSET, plugin)
    assert set(found) == {"non-root", PSA}
    assert "names unknown rules pod-security-restrictd" in found["non-root"][0]


# --- Pod Security: restricted pods, in namespaces that enforce it -------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("volumes",), [{"name": "host", "hostPath": {"path": "/var/run"}}], "type hostPath is not allowed"),
        (("securityContext", "seccompProfile"), {"type": "Unconfined"}, "must not be Unconfined"),
        (("hostNetwork",), True, "hostNetwork must be unset or false"),
    ],
)
def test_a_pod_the_restricted_standard_refuses_is_caught(
    shipped: Runs, path: tuple[str, ...], value: object, expected: str
) -> None:
    """Caught at preview, instead of a ReplicaSet that the API server refuses pods at rollout."""
    deployment = props_of(shipped["gke"], DEPLOYMENT)
    spec = deployment["spec"]["template"]["spec"]
    *parents, last = path
    for part in parents:
        spec = spec[part]
    spec[last] = value
    (message,) = only(PSA, DEPLOYMENT, deployment)
    assert message.startswith("Deployment mlstack-server breaks the restricted Pod Security Standard")
    assert expected in message


def test_a_container_that_adds_a_capability_is_caught(shipped: Runs) -> None:
    job = props_of(shipped["dev"], JOB, TRAIN)
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    (message,) = only(PSA, JOB, job)
    assert "capabilities.add may hold only NET_BIND_SERVICE, not NET_ADMIN" in message


@pytest.mark.parametrize("level", [None, "baseline", "privileged"])
def test_a_namespace_that_does_not_enforce_restricted_is_caught(shipped: Runs, level: str | None) -> None:
    """Finding: no Pod Security Admission label on the Namespace."""
    namespace = props_of(shipped["local"], "kubernetes:core/v1:Namespace")
    labels = namespace["metadata"]["labels"]
    if level is None:
        del labels[rules.PSA_ENFORCE_LABEL]
    else:
        labels[rules.PSA_ENFORCE_LABEL] = level
    (message,) = only("namespaces-enforce-restricted", "kubernetes:core/v1:Namespace", namespace)
    assert f"enforces Pod Security level {level or 'none'}: label it {rules.PSA_ENFORCE_LABEL}: restricted" in message


# --- a NetworkPolicy selects every pod --------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_pods_that_no_network_policy_selects_are_caught(shipped: Runs, stack: str) -> None:
    """Finding: no NetworkPolicy, so any pod in the cluster reached the server and the trainer reached anything."""
    run = shipped[stack]
    found = [(t, p) for t, p in resources(run) if rules.kubernetes_kind(t) != "NetworkPolicy"]
    messages = rules.stack_violations(found)["network-policy-selects-every-pod"]
    workloads = [str(rules.kubernetes_kind(t)) for t, p in found if rules.pod_spec(t, p) is not None]
    assert sorted(m.split(" ", 1)[0] for m in messages) == sorted(workloads), messages
    assert all("isolates them for Egress and Ingress" in m for m in messages), messages


def test_a_pod_isolated_one_way_only_is_caught(shipped: Runs) -> None:
    """The namespace's default-deny holds both ways; turned into ingress-only, the trainer may send anywhere."""
    found = resources(shipped["dev"], drop=("-trainer-network",))
    assert rules.stack_violations(found) == {}, "the default-deny alone still isolates the trainer"
    for policy in of_kind(found, "NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-default-deny"):
            policy["spec"]["policyTypes"] = ["Ingress"]
    (message,) = rules.stack_violations(found)["network-policy-selects-every-pod"]
    assert message.startswith("Job (pods app.kubernetes.io/component=trainer,")
    assert "for Egress," in message


def test_a_pod_moved_out_of_the_policies_namespace_is_caught(shipped: Runs) -> None:
    found = resources(shipped["gke"])
    (deployment,) = of_kind(found, "Deployment")
    deployment["metadata"]["namespace"] = "elsewhere"
    (message,) = rules.stack_violations(found)["network-policy-selects-every-pod"]
    assert "no NetworkPolicy in namespace elsewhere isolates them" in message


# --- servers only read the model store ----------------------------------------------------------------


def test_a_server_identity_that_can_write_the_bucket_is_caught(shipped: Runs) -> None:
    """Finding: on GKE one identity served both, so a compromised server could poison models."""
    found = resources(shipped["gke"])
    for type_, props in found:
        if type_ == rules.GCS_BUCKET_MEMBER and props["member"].endswith("/sa/mlstack-server"):
            props["role"] = "roles/storage.objectUser"
    (message,) = rules.stack_violations(found)["servers-only-read-the-store"]
    assert "service account mlstack/mlstack-server holds roles/storage.objectUser on a bucket" in message


def test_a_server_running_as_the_trainers_identity_is_caught(shipped: Runs) -> None:
    found = resources(shipped["gke"])
    (deployment,) = of_kind(found, "Deployment")
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = "mlstack-trainer"
    (message,) = rules.stack_violations(found)["servers-only-read-the-store"]
    assert "mlstack/mlstack-trainer holds roles/storage.objectUser" in message


@pytest.mark.parametrize("stack", ["local", "dev", "gke"])
def test_a_server_that_mounts_the_store_writable_is_caught(shipped: Runs, stack: str) -> None:
    """Where no cloud identity reaches the store (AKS's Azure Files, kind's volume), the mount is the boundary."""
    found = resources(shipped[stack])
    (deployment,) = of_kind(found, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    for volume in spec["volumes"]:
        for source in ("persistentVolumeClaim", "csi"):
            volume.get(source, {}).pop("readOnly", None)
    for mount in spec["containers"][0]["volumeMounts"]:
        if mount["name"] == "models":
            mount.pop("readOnly", None)
    (message,) = rules.stack_violations(found)["servers-only-read-the-store"]
    assert "mounts the store volume models writable" in message


# --- a stack's resource, through the pack's SDK --------------------------------------------------------

# One policy run as the engine runs it: props behind the SDK's unknown-checking proxy,
# with "<unknown>" in the input standing for a value a preview does not know yet.
_VALIDATE = """
    import json, sys
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
    from policy import __main__ as pack

    def unknowns(value):
        if isinstance(value, dict):
            return {k: unknowns(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unknowns(v) for v in value]
        return UNKNOWN_STRING_VALUE if value == "<unknown>" else value

    request = json.load(sys.stdin)
    policy = {p.name: p for p in pack.policies()}[request["policy"]]
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    props = unknown_checking_proxy(unknowns(request["props"]))
    args = ResourceValidationArgs(request["type"], props, "urn", "name", opts, None)
    reported = []
    policy.validate(args, lambda message, _urn=None: reported.append(message))
    print(json.dumps(reported))
"""


def _validate(policy: str, type_: str, props: dict[str, Any]) -> list[str]:
    reported: list[str] = in_pack_venv(_VALIDATE, {"policy": policy, "type": type_, "props": props})
    return reported


def test_the_pack_reports_through_the_sdk_and_judges_what_is_known_in_a_preview(shipped: Runs) -> None:
    deployment = props_of(shipped["dev"], DEPLOYMENT)
    assert _validate("image-digest", DEPLOYMENT, deployment) == []
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "<unknown>"  # what a preview sends before the image is built
    assert _validate("image-digest", DEPLOYMENT, copy.deepcopy(deployment)) == []
    del container["livenessProbe"]  # known, and wrong: still caught beside the unknown
    (message,) = _validate("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert "has no livenessProbe" in message
