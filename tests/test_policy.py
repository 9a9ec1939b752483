"""The policy pack (policy/): every shipped stack passes it, and every rule catches what it forbids.

The rules see what the engine sends a policy pack: each resource's inputs with
camelCase names and secrets unwrapped, here taken from the program run under
the mocks. Each crafted case starts from a real resource of a stack and breaks
one thing.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components import gpu, target
from policy import rules
from tests.conftest import STACKS
from tools import harness

# Until the stacks build their images, run them on digest-pinned prebuilt refs.
DIGEST = "@sha256:" + "a" * 64
# Prebuilt images named by tag only: the config accepts them, the pack must not.
TAG_ONLY = {"trainerImage": "registry.example.com/ml/trainer:1.0", "serverImage": "registry.example.com/ml/server:1.0"}
# What the pack may advise on a shipped stack: the local stack has no source ranges (kind).
EXPECTED_ADVICE = {"local": {("load-balancer-source-ranges", "mlstack-service")}, "dev": set(), "gke": set()}


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, harness.StackRun]]:
    """Every shipped stack as it ships: images built, the pods on their digest-pinned refs."""
    with harness.offline_kubeconfig():
        yield {stack: harness.run_stack(stack) for stack in STACKS}


def props_of(run: harness.StackRun, type_: str, name_suffix: str = "") -> dict[str, Any]:
    """A resource's inputs as the engine hands them to a policy pack (a copy, free to break)."""
    return copy.deepcopy(harness.plain(run.one(type_, name_suffix).inputs))


def findings(run: harness.StackRun) -> list[tuple[str, str, str, str]]:
    """(level, rule, resource name, message) for every violation in a stack."""
    return [
        (rules.RULES_BY_NAME[rule].level, rule, registration.name, message)
        for registration in run.registrations.values()
        for rule, messages in rules.violations(registration.type, harness.plain(registration.inputs)).items()
        for message in messages
    ]


def only(rule: str, type_: str, props: dict[str, Any]) -> list[str]:
    """The messages of ``rule``, after checking that no other rule fired on the crafted resource."""
    found = rules.violations(type_, props)
    assert set(found) <= {rule}, f"{type_}: other rules fired too: {found}"
    return found.get(rule, [])


JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"


# --- the shipped stacks ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes_the_pack(runs: dict[str, harness.StackRun], stack: str) -> None:
    found = findings(runs[stack])
    mandatory = [f"{name}: {message}" for level, _, name, message in found if level == "mandatory"]
    assert mandatory == [], f"{stack} breaks the pack:\n" + "\n".join(mandatory)
    advice = {(rule, name) for level, rule, name, _ in found if level == "advisory"}
    assert advice == EXPECTED_ADVICE[stack]


@pytest.mark.parametrize("stack", STACKS)
def test_the_pack_judges_every_workload_of_a_stack(runs: dict[str, harness.StackRun], stack: str) -> None:
    """Not vacuous: the Job and the Deployment hold a pod spec the rules read, with containers."""
    run = runs[stack]
    for type_ in (JOB, DEPLOYMENT):
        spec = rules.pod_spec(type_, props_of(run, type_))
        assert spec is not None, f"{stack}: no pod spec found in the {type_}"
        assert [c["image"] for c in rules.containers(spec)], f"{stack}: no containers in the {type_}"


def test_tag_only_prebuilt_images_are_caught(run_stack: Any) -> None:
    """Prebuilt images named by a tag the registry can move: the digest rule must see them."""
    found = findings(run_stack("dev", overrides=TAG_ONLY))
    caught = {(rule, name) for _, rule, name, _ in found}
    assert caught == {("image-digest", "mlstack-train"), ("image-digest", "mlstack-server")}


# --- GPU pods tolerate the GPU taint ------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_gpu_pod_without_the_gpu_toleration_is_caught(runs: dict[str, harness.StackRun], stack: str) -> None:
    job = props_of(runs[stack], JOB)
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    spec["tolerations"] = [t for t in spec["tolerations"] if t["key"] != target.GPU_TAINT_KEY]
    (message,) = only("gpu-pods-tolerate-gpu-taint", JOB, job)
    assert "container(s) trainer request nvidia.com/gpu" in message
    assert "add the toleration {key: nvidia.com/gpu, operator: Equal, value: present, effect: NoSchedule}" in message


def test_pod_without_a_gpu_needs_no_gpu_toleration(runs: dict[str, harness.StackRun]) -> None:
    job = props_of(runs["local"], JOB)
    assert "tolerations" not in job["spec"]["template"]["spec"]
    assert only("gpu-pods-tolerate-gpu-taint", JOB, job) == []


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


# --- GPU pools carry the GPU taint ----------------------------------------------------------


def test_aks_gpu_pool_without_the_taint_is_caught(runs: dict[str, harness.StackRun]) -> None:
    pool = props_of(runs["dev"], rules.AKS_AGENT_POOL)
    pool["nodeTaints"] = ["kubernetes.azure.com/scalesetpriority=spot:NoSchedule"]
    (message,) = only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool)
    assert message.startswith("AgentPool gpu (Standard_NC4as_T4_v3) is a GPU pool without the GPU taint")
    assert "add 'nvidia.com/gpu=present:NoSchedule' to nodeTaints" in message


def test_aks_pool_labelled_gpu_is_a_gpu_pool_whatever_its_size(runs: dict[str, harness.StackRun]) -> None:
    pool = props_of(runs["dev"], rules.AKS_AGENT_POOL)
    pool["vmSize"] = "Standard_D4s_v5"
    del pool["nodeTaints"]
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool)
    del pool["nodeLabels"]
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_AGENT_POOL, pool) == []


def test_aks_inline_gpu_pool_without_the_taint_is_caught(runs: dict[str, harness.StackRun]) -> None:
    cluster = props_of(runs["dev"], rules.AKS_MANAGED_CLUSTER)
    assert only("gpu-pools-carry-gpu-taint", rules.AKS_MANAGED_CLUSTER, cluster) == []  # the system pool
    cluster["agentPoolProfiles"].append({"name": "gpu2", "vmSize": "Standard_NC6s_v3", "count": 0})
    (message,) = only("gpu-pools-carry-gpu-taint", rules.AKS_MANAGED_CLUSTER, cluster)
    assert message.startswith("ManagedCluster inline pool gpu2 (Standard_NC6s_v3) is a GPU pool")


def test_every_azure_gpu_size_of_the_catalogue_is_seen_as_a_gpu_size() -> None:
    for size in gpu.AZURE_GPU_SIZES:
        assert rules.AKS_GPU_VM_SIZE.match(size), size
    for size in ("Standard_D4s_v5", "Standard_B2s", "Standard_E8s_v5"):
        assert not rules.AKS_GPU_VM_SIZE.match(size), size


def test_gke_gpu_pool_without_the_taint_is_caught(runs: dict[str, harness.StackRun]) -> None:
    pool = props_of(runs["gke"], rules.GKE_NODE_POOL, "-gpu")
    pool["nodeConfig"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}]
    (message,) = only("gpu-pools-carry-gpu-taint", rules.GKE_NODE_POOL, pool)
    assert "has guest accelerators but no GPU taint" in message
    assert "nodeConfig.taints {key: nvidia.com/gpu, value: present, effect: NO_SCHEDULE}" in message
    system = props_of(runs["gke"], rules.GKE_NODE_POOL, "-system")
    assert "taints" not in system["nodeConfig"]
    assert only("gpu-pools-carry-gpu-taint", rules.GKE_NODE_POOL, system) == []


def test_the_pack_agrees_with_the_targets_taint() -> None:
    assert (rules.GPU_TAINT_KEY, rules.GPU_TAINT_VALUE, rules.GPU_TAINT_EFFECT) == (
        target.GPU_TAINT_KEY,
        target.GPU_TAINT_VALUE,
        target.GPU_TAINT_EFFECT,
    )
    assert rules.GPU_RESOURCE == target.GPU_RESOURCE


# --- Deployments: probes and limits -----------------------------------------------------------


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_deployment_without_a_probe_is_caught(runs: dict[str, harness.StackRun], probe: str) -> None:
    deployment = props_of(runs["dev"], DEPLOYMENT)
    del deployment["spec"]["template"]["spec"]["containers"][0][probe]
    (message,) = only("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert f"container server has no {probe}" in message


@pytest.mark.parametrize("resource", ["cpu", "memory"])
def test_deployment_without_a_limit_is_caught(runs: dict[str, harness.StackRun], resource: str) -> None:
    deployment = props_of(runs["gke"], DEPLOYMENT)
    del deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][resource]
    (message,) = only("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert f"container server has no {resource} limit: set resources.limits.{resource}" in message


# --- non-root, no privilege escalation ----------------------------------------------------------


def test_pod_that_may_run_as_root_is_caught(runs: dict[str, harness.StackRun]) -> None:
    deployment = props_of(runs["local"], DEPLOYMENT)
    spec = deployment["spec"]["template"]["spec"]
    del spec["securityContext"]["runAsNonRoot"]
    assert only("non-root", DEPLOYMENT, deployment) == [], "the container's own runAsNonRoot is enough"
    del spec["containers"][0]["securityContext"]["runAsNonRoot"]
    (message,) = only("non-root", DEPLOYMENT, deployment)
    assert "container server may run as root: set securityContext.runAsNonRoot: true" in message


def test_container_that_overrides_the_pods_non_root_is_caught(runs: dict[str, harness.StackRun]) -> None:
    job = props_of(runs["dev"], JOB)
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    (message,) = only("non-root", JOB, job)
    assert "container trainer may run as root" in message


def test_privilege_escalation_is_caught(runs: dict[str, harness.StackRun]) -> None:
    job = props_of(runs["gke"], JOB)
    context = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    del context["allowPrivilegeEscalation"]
    (message,) = only("non-root", JOB, job)
    assert "may gain privileges: set securityContext.allowPrivilegeEscalation: false" in message
    context["allowPrivilegeEscalation"] = False
    context["privileged"] = True
    (message,) = only("non-root", JOB, job)
    assert "is privileged" in message


# --- images pinned by digest ---------------------------------------------------------------------


def test_image_without_a_digest_is_caught(runs: dict[str, harness.StackRun]) -> None:
    deployment = props_of(runs["dev"], DEPLOYMENT)
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
def test_config_map_key_that_looks_secret_is_caught(runs: dict[str, harness.StackRun], key: str) -> None:
    config_map = props_of(runs["dev"], CONFIGMAP, "-env")
    config_map["data"][key] = "x"
    (message,) = only("configmaps-hold-no-secrets", CONFIGMAP, config_map)
    assert f"key {key!r} looks like a secret" in message
    assert "move it to the basic-auth Secret" in message


@pytest.mark.parametrize("key", ["MLAPP_LABELS_FILE", "tokenizer.json", "MLAPP_AUTH_USERNAME", "keyboard", "secretary"])
def test_config_map_key_that_only_resembles_a_secret_passes(key: str) -> None:
    assert not rules.looks_secret(key), key


# --- Secret types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret_type", ["Opaque", None, "kubernetes.io/dockerconfigjson"])
def test_secret_of_another_type_is_caught(runs: dict[str, harness.StackRun], secret_type: str | None) -> None:
    secret = props_of(runs["gke"], SECRET)
    assert secret["type"] == "kubernetes.io/basic-auth"
    if secret_type is None:
        del secret["type"]
    else:
        secret["type"] = secret_type
    (message,) = only("secret-types", SECRET, secret)
    assert f"is of type {secret_type or 'Opaque (no type given)'}: mlstack ships only kubernetes.io/basic-auth" in (
        message
    )


# --- advisory: LoadBalancer source ranges, GPU pools from zero -----------------------------------------


def test_load_balancer_open_to_everyone_is_advised(runs: dict[str, harness.StackRun]) -> None:
    service = props_of(runs["dev"], SERVICE)
    service["spec"]["loadBalancerSourceRanges"] = []
    (message,) = only("load-balancer-source-ranges", SERVICE, service)
    assert "set mlstack:allowedSourceRanges" in message
    assert rules.RULES_BY_NAME["load-balancer-source-ranges"].level == "advisory"
    service["spec"]["type"] = "ClusterIP"
    assert only("load-balancer-source-ranges", SERVICE, service) == []


def test_aks_gpu_pool_above_zero_is_advised(runs: dict[str, harness.StackRun]) -> None:
    pool = props_of(runs["dev"], rules.AKS_AGENT_POOL)
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
def test_gke_gpu_pool_above_zero_is_advised(runs: dict[str, harness.StackRun], field: str) -> None:
    pool = props_of(runs["gke"], rules.GKE_NODE_POOL, "-gpu")
    pool["autoscaling"].pop("totalMinNodeCount")
    pool["autoscaling"][field] = 1.0
    (message,) = only("gpu-pools-scale-to-zero", rules.GKE_NODE_POOL, pool)
    assert f"{field} is 1.0" in message
    assert "autoscale from 0 (mlstack:gpuMinNodes: 0)" in message


def test_the_config_that_keeps_a_gpu_node_is_advised(run_stack: Any) -> None:
    for stack in ("dev", "gke"):
        found = findings(run_stack(stack, overrides={"gpuMinNodes": 1}))
        assert {(level, rule) for level, rule, _, _ in found} == {("advisory", "gpu-pools-scale-to-zero")}, stack


# --- exemptions --------------------------------------------------------------------------------------


def test_device_plugin_exemptions_are_explained_and_limited(runs: dict[str, harness.StackRun]) -> None:
    plugin = props_of(runs["dev"], DAEMONSET)
    assert plugin["metadata"]["annotations"][rules.EXEMPT_ANNOTATION] == "non-root,image-digest"
    assert rules.violations(DAEMONSET, plugin) == {}
    # Only the named rules: a GPU request without the toleration would still be caught.
    plugin["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    plugin["spec"]["template"]["spec"]["tolerations"] = []
    assert set(rules.violations(DAEMONSET, plugin)) == {"gpu-pods-tolerate-gpu-taint"}
    plugin = props_of(runs["dev"], DAEMONSET)
    del plugin["metadata"]["annotations"][rules.EXEMPT_REASON_ANNOTATION]
    found = rules.violations(DAEMONSET, plugin)
    assert set(found) == {"non-root", "image-digest"}
    assert found["image-digest"][0].startswith("exemption from image-digest, non-root has no reason")


def test_exemption_naming_an_unknown_rule_exempts_nothing(runs: dict[str, harness.StackRun]) -> None:
    plugin = props_of(runs["dev"], DAEMONSET)
    plugin["metadata"]["annotations"][rules.EXEMPT_ANNOTATION] = "non-root,image-digests"
    found = rules.violations(DAEMONSET, plugin)
    assert set(found) == {"non-root", "image-digest"}
    assert "names unknown rules image-digests" in found["non-root"][0]


# --- the pack as the engine runs it -----------------------------------------------------------------


# The pack runs in its own venv, as the CLI runs it (policy/requirements.txt): pulumi-policy
# pins protobuf 5.29, which the app's onnx cannot share. `make test` creates policy/venv.
POLICY_PYTHON = harness.ROOT / os.environ.get("MLSTACK_POLICY_PYTHON", "policy/venv/bin/python")


def in_pack_venv(script: str, payload: Any = None) -> Any:
    """Run ``script`` with the pack's own interpreter (repository root on the path); JSON in, JSON out."""
    if not POLICY_PYTHON.exists():
        pytest.fail(f"{POLICY_PYTHON} is missing: `make test` creates policy/venv from policy/requirements.txt")
    done = subprocess.run(
        [str(POLICY_PYTHON), "-c", textwrap.dedent(script)],
        input=json.dumps(payload), capture_output=True, text=True, cwd=harness.ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"the pack's venv failed:\n{done.stderr}"
    return json.loads(done.stdout)


def test_the_pack_declares_every_rule_with_its_level() -> None:
    declared = in_pack_venv(
        """
        import json
        from pulumi_policy import ResourceValidationPolicy
        from policy import __main__ as pack
        policies = pack.policies()
        assert all(isinstance(p, ResourceValidationPolicy) for p in policies)
        print(json.dumps({p.name: [p.enforcement_level.value, bool(p.description)] for p in policies}))
        """
    )
    assert declared == {
        "gpu-pods-tolerate-gpu-taint": ["mandatory", True],
        "gpu-pools-carry-gpu-taint": ["mandatory", True],
        "deployments-have-probes-and-limits": ["mandatory", True],
        "non-root": ["mandatory", True],
        "image-digest": ["mandatory", True],
        "configmaps-hold-no-secrets": ["mandatory", True],
        "secret-types": ["mandatory", True],
        "load-balancer-source-ranges": ["advisory", True],
        "gpu-pools-scale-to-zero": ["advisory", True],
    }


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


def test_the_pack_reports_through_the_sdk_and_judges_what_is_known_in_a_preview(
    runs: dict[str, harness.StackRun],
) -> None:
    deployment = props_of(runs["dev"], DEPLOYMENT)
    assert _validate("image-digest", DEPLOYMENT, deployment) == []
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "<unknown>"  # what a preview sends before the image is built
    assert _validate("image-digest", DEPLOYMENT, copy.deepcopy(deployment)) == []
    del container["livenessProbe"]  # known, and wrong: still caught beside the unknown
    (message,) = _validate("deployments-have-probes-and-limits", DEPLOYMENT, deployment)
    assert "has no livenessProbe" in message


def test_the_pack_files_name_a_python_pack_and_its_sdk() -> None:
    root = Path(__file__).resolve().parent.parent / "policy"
    assert re.search(r"(?m)^runtime:\n  name: python$", (root / "PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert "pulumi-policy==" in (root / "requirements.txt").read_text(encoding="utf-8")


def test_the_pack_serves_the_engine_on_its_own(tmp_path: Path) -> None:
    """As the CLI runs it: the pack's folder alone (not the repository) on the path, spoken to over gRPC."""
    import grpc  # type: ignore[import-untyped]
    from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    pack_dir = Path(__file__).resolve().parent.parent / "policy"
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    if not POLICY_PYTHON.exists():
        pytest.fail(f"{POLICY_PYTHON} is missing: `make test` creates policy/venv from policy/requirements.txt")
    server = subprocess.Popen(
        [str(POLICY_PYTHON), "-c", code, str(pack_dir)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), f"the pack did not start: {port!r}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            levels = {p.name: analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel) for p in info.policies}
            assert info.name == "mlstack"
            assert levels == {r.name: r.level.upper() for r in rules.RULES}
            job = struct_pb2.Struct()
            job.update({
                "metadata": {"name": "train"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "trainer", "image": "trainer:1.0", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                ]}}},
            })  # fmt: skip
            request = analyzer_pb2.AnalyzeRequest(
                type="kubernetes:batch/v1:Job", properties=job, urn="urn:pulumi:s::p::kubernetes:batch/v1:Job::t"
            )
            response = stub.Analyze(request, timeout=30)
        found = {(d.policyName, analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel)) for d in response.diagnostics}
        assert found == {
            ("gpu-pods-tolerate-gpu-taint", "MANDATORY"),
            ("non-root", "MANDATORY"),
            ("image-digest", "MANDATORY"),
        }
        assert any("add the toleration {key: nvidia.com/gpu" in d.message for d in response.diagnostics)
    finally:
        server.kill()
        server.wait()
