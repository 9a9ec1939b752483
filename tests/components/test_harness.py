"""The harness itself must be able to fail: what the real engine would refuse, it refuses too."""

from __future__ import annotations

import gc
import logging

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls
import pytest

from tools import harness


def test_harness_refuses_duplicate_resource_names() -> None:
    def program() -> None:
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="a"))
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="b"))

    with pytest.raises(harness.HarnessError, match=r"duplicate resource URN"):
        harness.run(program, {})


def test_a_refused_run_leaves_no_failed_future_to_log_after_the_tests(caplog: pytest.LogCaptureFixture) -> None:
    """Bug: the monitor raised on the duplicate, which failed the resource's output futures; nothing awaited
    them, so asyncio logged "Future exception was never retrieved" ten times when they were collected, after
    pytest's summary, as "Logging error" tracebacks into its closed capture streams."""

    def program() -> None:
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="a"))
        k8s.core.v1.Namespace("same", metadata=k8s.meta.v1.ObjectMetaArgs(name="b"))

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(harness.HarnessError):
        harness.run(program, {})
    harness.run(lambda: None, {})  # the next run resets the runtime that held the first one's futures
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


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


def test_runs_do_not_leak_into_each_other() -> None:
    """Each run starts from a fresh runtime: the second sees neither the first's resources nor its exports."""

    def first() -> None:
        k8s.core.v1.Namespace("first", metadata=k8s.meta.v1.ObjectMetaArgs(name="a"))
        pulumi.export("from_first", "x")

    def second() -> None:
        k8s.core.v1.Namespace("second", metadata=k8s.meta.v1.ObjectMetaArgs(name="b"))

    harness.run(first, {})
    result = harness.run(second, {})
    assert [r.name for r in result.registrations.values()] == ["second"]
    assert result.exports == {}


def test_outputs_an_sdk_marks_secret_come_back_secret_as_from_the_engine() -> None:
    """The engine wraps a resource's additional_secret_outputs (pulumi-tls marks its private keys so);
    the mocks would hand them back plain, and a key passed on would look plain in the next inputs."""
    seen: dict[str, pulumi.Output[str]] = {}

    def program() -> None:
        key = tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")
        seen["private"], seen["public"] = key.private_key_pem, key.public_key_pem
        tls.SelfSignedCert(
            "ca", private_key_pem=key.private_key_pem, allowed_uses=["cert_signing"], validity_period_hours=1
        )

    result = harness.run(program, {})
    assert harness.is_secret(seen["private"])
    assert not harness.is_secret(seen["public"]), "only what the SDK marks becomes secret"
    key = result.one("tls:index/privateKey:PrivateKey")
    assert "privateKeyPem" in key.secret_outputs
    assert harness.is_secret_value(key.outputs["privateKeyPem"]), "recorded as the engine stores it"
    assert not harness.is_secret_value(key.outputs["publicKeyPem"])
    ca = result.one("tls:index/selfSignedCert:SelfSignedCert")
    assert harness.is_secret_value(ca.inputs["privateKeyPem"]), "the key stays secret where it is passed on"
    assert "PRIVATE KEY" in harness.plain(ca.inputs["privateKeyPem"])
