"""Whole stacks, as `pulumi up` would run them: every object valid, every secret secret, everything parented.

This is the one place the shipped stacks' Kubernetes objects are validated
against the official schema (strict); every other test reads the same shared runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

from mlstack.clouds import CLOUDS
from stack.config import ConfigError
from tests.support import (
    DAEMONSET,
    SECRET,
    SERVICE,
    STACK_CLOUDS,
    STACKS,
    CountingMocks,
    RunStack,
    SharedRun,
    plain_strings,
)
from tools import crds, harness

PASSWORD = "a-configured-secret-password"
# Kinds every stack must have had validated, beyond the workloads' own (a target's objects too).
VALIDATED_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim", "Job",
                   "Deployment", "Service", "PodDisruptionBudget"}  # fmt: skip


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_passes_the_strict_schema(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    # No shipped stack pins a version: each runs what its cloud gives a new cluster (offline, the catalogue's).
    version = CLOUDS[STACK_CLOUDS[stack]].default_minor
    assert result.kubernetes_version == version, f"{stack}: validated against {result.kubernetes_version}"
    objects = list(harness.kubernetes_manifests(result))
    kinds = {obj["kind"] for _, obj in objects}
    expected = VALIDATED_KINDS - ({"PersistentVolumeClaim"} if stack == "gke" else set())  # GKE: a bucket, inline
    assert kinds >= expected, f"{stack}: not validated: {sorted(expected - kinds)}"
    if stack == "dev":
        assert DAEMONSET in {r.type for r, _ in objects}, "the AKS device plugin was not validated"
    # The custom objects too, against their vendored CRDs (tools/crds.py).
    # KEDA's objects on every stack (against each KEDA release the stack's cluster may run); where the KEDA
    # operator authenticates to a cloud's Prometheus, a TriggerAuthentication.
    keda = {"ScaledObject"} | ({"TriggerAuthentication"} if stack != "local" else set())
    custom = {"gke": {"PodMonitoring"}, "dev": {"PodMonitor"}, "local": set()}[stack] | keda
    assert {obj["kind"] for _, obj in objects if crds.is_custom(obj)} == custom, stack
    problems = [p for _, obj in objects for p in harness.validate_manifest(obj, result.kubernetes_version)]
    assert problems == [], f"{stack} against Kubernetes {result.kubernetes_version}:\n" + "\n".join(problems)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_exports(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    names = ("url", "namespace", "modelName", "modelVersion", "basicAuthUsername", "basicAuthPassword", "kubeconfig")
    for name in (*names, "curl"):
        assert name in result.exports, f"{stack} does not export {name}"
    assert result.secret_exports >= {"basicAuthPassword", "kubeconfig"}
    plain = {"url", "curl", "namespace", "modelName", "modelVersion"}
    assert not result.secret_exports & plain, f"{stack}: plain outputs turned secret"
    curl = result.exports["curl"]
    assert "pulumi stack output basicAuthPassword --show-secrets" in curl
    # The served model's metadata, which any model answers (Open Inference Protocol v2): the model
    # `make smoke` calls by the modelName output (Pulumi.yaml's default, digits).
    assert result.exports["modelName"] == "digits", stack
    assert curl.endswith(" " + result.exports["url"] + "/v2/models/" + result.exports["modelName"])
    assert result.exports["modelVersion"].startswith("v")


# Each target's own exports, by stack (README, "Stack outputs").
TARGET_EXPORTS = {
    "local": set(),
    "dev": {"clusterName", "resourceGroup", "registryLoginServer", "getCredentials", "metricsWorkspaceId"},
    "gke": {"clusterName", "location", "registryUrl", "modelBucket", "getCredentials"},
}


@pytest.mark.parametrize("stack", STACKS)
def test_the_cluster_registers_what_the_stack_exports_of_it(
    run_stack: RunStack, monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    """A target declares its outputs once (``stack_outputs``): the cluster component registers them under the
    names the stack exports them by, with the same values, and its kubeconfig (secret) beside them."""
    registered: dict[str, Mapping[str, Any]] = {}
    register = pulumi.ComponentResource.register_outputs

    def recording(component: pulumi.ComponentResource, outputs: Mapping[str, Any]) -> None:
        if hasattr(component, "stack_outputs"):  # a ClusterTarget
            registered[type(component).__name__] = outputs
        register(component, outputs)

    monkeypatch.setattr(pulumi.ComponentResource, "register_outputs", recording)
    result = run_stack(stack)
    ((component, outputs),) = registered.items()
    assert set(outputs) == TARGET_EXPORTS[stack] | {"kubeconfig"}, component
    assert TARGET_EXPORTS[stack] <= set(result.exports), stack
    for name in TARGET_EXPORTS[stack]:
        value = outputs[name]
        assert (harness.resolve(value) if isinstance(value, pulumi.Output) else value) == result.exports[name], name
    assert harness.is_secret(outputs["kubeconfig"]), f"{component} registers its kubeconfig in plain text"
    assert harness.resolve(outputs["kubeconfig"]) == result.exports["kubeconfig"], component


@pytest.mark.parametrize("stack", STACKS)
def test_configured_password_never_appears_in_plain_text(shared_run: SharedRun, stack: str) -> None:
    result = shared_run(stack, secrets={"basicAuthPassword": PASSWORD})
    assert result.of_type("random:index/randomPassword:RandomPassword") == [], "a configured password is not generated"
    assert result.exports["basicAuthPassword"] == PASSWORD
    assert "basicAuthPassword" in result.secret_exports
    for registration in result.registrations.values():
        for text in plain_strings(registration.inputs) + plain_strings(registration.outputs):
            assert PASSWORD not in text, f"{registration.name} carries the password in plain text"
    for name, value in result.exports.items():
        if name not in result.secret_exports:
            assert PASSWORD not in str(value), f"output {name} carries the password in plain text"
    string_data = result.one(SECRET, "-basic-auth").inputs["stringData"]
    assert harness.is_secret_value(string_data) or harness.is_secret_value(string_data["password"])


@pytest.mark.parametrize("stack", STACKS)
def test_generated_password_is_secret_everywhere(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    assert len(result.of_type("random:index/randomPassword:RandomPassword")) == 1
    for registration in result.kubernetes_objects():
        for text in plain_strings(registration.inputs):
            assert harness.MOCK_GENERATED_PASSWORD not in text, f"{registration.name} carries it in plain text"


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_has_a_component_parent(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    components = {r.urn for r in result.registrations.values() if r.type.startswith("mlstack:")}
    for registration in result.registrations.values():
        if not registration.type.startswith("mlstack:"):
            assert registration.parent in components, f"{registration.name} ({registration.type}) has no component"


def test_local_stack_waits_for_no_external_ip(shipped: dict[str, harness.StackRun]) -> None:
    result = shipped["local"]
    service = result.one(SERVICE, "-service")
    assert service.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert result.exports["url"] == "https://localhost:8443"
    assert result.exports["portForward"].startswith("kubectl --context kind-mlstack -n mlstack port-forward")
    assert result.exports["curl"].startswith("(kubectl")


def test_bad_config_fails_before_any_resource(run_stack: RunStack) -> None:
    mocks = CountingMocks()
    with pytest.raises(ConfigError, match=r"^invalid stack configuration \(2 problems\):") as caught:
        run_stack("local", overrides={"replicas": 0, "namespace": "Bad Name"}, mocks=mocks)
    assert "mlstack:replicas" in str(caught.value)
    assert "mlstack:namespace" in str(caught.value)
    assert mocks.created == []
