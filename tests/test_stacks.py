"""Whole stacks, as `pulumi up` would run them: every object valid, every secret secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.conftest import STACKS
from tools import harness

RunStack = Callable[..., harness.StackRun]
PASSWORD = "a-configured-secret-password"


def _plain_strings(value: Any) -> list[str]:
    """Every string in a wire value that is not inside a secret marker."""
    if harness.is_secret_value(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _plain_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_passes_the_strict_schema(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    assert result.kubernetes_version, f"{stack}: no kubernetesVersion"
    objects = list(harness.kubernetes_manifests(result))
    assert len(objects) >= 10, f"{stack}: only {len(objects)} Kubernetes objects"
    problems = [p for _, obj in objects for p in harness.validate_manifest(obj, result.kubernetes_version)]
    assert problems == [], f"{stack} against Kubernetes {result.kubernetes_version}:\n" + "\n".join(problems)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_exports(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    for name in ("url", "namespace", "modelVersion", "basicAuthUsername", "basicAuthPassword", "kubeconfig", "curl"):
        assert name in result.exports, f"{stack} does not export {name}"
    assert result.secret_exports >= {"basicAuthPassword", "kubeconfig"}
    assert not result.secret_exports & {"url", "curl", "namespace", "modelVersion"}, "plain outputs turned secret"
    curl = result.exports["curl"]
    assert "pulumi stack output basicAuthPassword --show-secrets" in curl
    assert result.exports["url"] + "/predict" in curl
    assert result.exports["modelVersion"].startswith("v")


@pytest.mark.parametrize("stack", STACKS)
def test_configured_password_never_appears_in_plain_text(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack, secrets={"basicAuthPassword": PASSWORD})
    assert result.of_type("random:index/randomPassword:RandomPassword") == [], "a configured password is not generated"
    assert result.exports["basicAuthPassword"] == PASSWORD
    assert "basicAuthPassword" in result.secret_exports
    for registration in result.registrations.values():
        for text in _plain_strings(registration.inputs) + _plain_strings(registration.outputs):
            assert PASSWORD not in text, f"{registration.name} carries the password in plain text"
    for name, value in result.exports.items():
        if name not in result.secret_exports:
            assert PASSWORD not in str(value), f"output {name} carries the password in plain text"
    (secret,) = result.of_type("kubernetes:core/v1:Secret")
    string_data = secret.inputs["stringData"]
    assert harness.is_secret_value(string_data) or harness.is_secret_value(string_data["password"])


@pytest.mark.parametrize("stack", STACKS)
def test_generated_password_is_secret_everywhere(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    assert len(result.of_type("random:index/randomPassword:RandomPassword")) == 1
    for registration in result.kubernetes_objects():
        for text in _plain_strings(registration.inputs):
            assert harness.MOCK_GENERATED_PASSWORD not in text, f"{registration.name} carries it in plain text"


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_has_a_component_parent(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    components = {r.urn for r in result.registrations.values() if r.type.startswith("mlstack:")}
    for registration in result.registrations.values():
        if not registration.type.startswith("mlstack:"):
            assert registration.parent in components, f"{registration.name} ({registration.type}) has no component"


def test_local_stack_waits_for_no_external_ip(run_stack: RunStack) -> None:
    result = run_stack("local")
    (service,) = result.of_type("kubernetes:core/v1:Service")
    assert service.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert result.exports["url"] == "http://localhost:8080"
    assert result.exports["portForward"].startswith("kubectl --context kind-mlstack -n mlstack port-forward")
    assert result.exports["curl"].startswith("(kubectl")


def test_bad_config_fails_before_any_resource(run_stack: RunStack) -> None:
    with pytest.raises(Exception, match=r"invalid stack configuration") as caught:
        run_stack("local", overrides={"replicas": 0, "namespace": "Bad Name"})
    assert "mlstack:replicas" in str(caught.value)
    assert "mlstack:namespace" in str(caught.value)


# --- the harness itself must be able to fail -------------------------------------------


def test_harness_refuses_duplicate_resource_names() -> None:
    def program() -> None:
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="a"))
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="b"))

    with pytest.raises(Exception, match=r"duplicate resource URN"):
        harness.run(program, {})


def test_harness_fails_on_an_unmocked_invoke() -> None:
    def program() -> None:
        pulumi.runtime.invoke("example:index:getThing", {})

    with pytest.raises(Exception, match=r"example:index:getThing"):
        harness.run(program, {})


def test_schema_check_catches_a_typo_the_mocks_accept() -> None:
    def program() -> None:
        k8s.apps.v1.Deployment(
            "typo",
            metadata={"name": "web"},
            spec={  # a dict literal: the SDK does not see the typo
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "imagePullPolicy": "Always",
                                             "livenessprobe": {"httpGet": {"path": "/", "port": 80}}}]},
                },
            },
        )  # fmt: skip

    result = harness.run(program, {})
    (obj,) = (m for _, m in harness.kubernetes_manifests(result))
    problems = harness.validate_manifest(obj, "1.33")
    assert problems
    assert "livenessprobe" in problems[0]


def test_harness_loads_config_like_the_cli() -> None:
    values, secret_keys = harness.load_stack_config(
        "local", overrides={"replicas": 3}, secrets={"basicAuthPassword": "x"}
    )
    assert values["mlstack:cloud"] == "local"  # from Pulumi.local.yaml
    assert values["mlstack:namespace"] == "mlstack"  # a Pulumi.yaml default
    assert values["mlstack:replicas"] == "3"  # the override, as the string the CLI passes
    assert values["mlstack:modelLabels"].startswith('["0", "1"')
    assert secret_keys == ["mlstack:basicAuthPassword"]
    with pytest.raises(harness.HarnessError, match=r"not of the type Pulumi.yaml declares"):
        harness.load_stack_config("local", overrides={"replicas": "three"})
