"""LocalCluster under mocks: one kubeconfig context, no GPU, no external IP, no other cluster's credentials.

Its kubeconfig handling alone: tests/pure/test_local.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.local import KubeconfigError, LocalCluster, LocalClusterArgs
from tests.support import kubeconfig_document
from tools import harness


def test_missing_kubeconfig_says_how_to_get_a_cluster(tmp_path: Path) -> None:
    args = LocalClusterArgs(
        kubeconfig_paths=(str(tmp_path / "absent"),), metrics_namespace="monitoring", scrape_by="prometheus-annotations"
    )
    with pytest.raises(KubeconfigError, match=r"no kubeconfig found.*kind create cluster"):
        harness.run(lambda: LocalCluster("local", args), {})


def test_local_cluster_fulfils_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig_document("kind-ml", "kind-ml", "prod-aks"), encoding="utf-8")
    built: list[LocalCluster] = []
    args = LocalClusterArgs(
        kubeconfig_paths=(str(path),),
        metrics_namespace="monitoring",
        scrape_by="prometheus-annotations",
        registry="localhost:5001",
    )
    result = harness.run(lambda: built.append(LocalCluster("local", args)), {})
    cluster = built[0]
    assert cluster.gpu is None
    assert cluster.external_load_balancer is False
    assert cluster.kube_context == "kind-ml"
    assert cluster.stack_outputs == {}
    assert cluster.registry is not None
    assert cluster.registry.server == "localhost:5001"
    assert cluster.model_store.claim is not None
    assert cluster.model_store.claim.storage_class is None
    assert harness.is_secret(cluster.kubeconfig)
    provider = result.one("pulumi:providers:kubernetes")
    assert provider.parent == result.one("mlstack:local:LocalCluster").urn
    assert harness.is_secret_value(provider.inputs["kubeconfig"]), "the provider's kubeconfig input must be secret"
    assert provider.inputs["context"] == "kind-ml"
    assert "secret-of-prod-aks" not in str(provider.inputs)


def test_without_a_registry_nothing_is_pushed(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig_document("kind-ml", "kind-ml"), encoding="utf-8")
    built: list[LocalCluster] = []
    harness.run(
        lambda: built.append(
            LocalCluster(
                "local",
                LocalClusterArgs(
                    kubeconfig_paths=(str(path),), metrics_namespace="monitoring", scrape_by="prometheus-annotations"
                ),
            )
        ),
        {},
    )
    assert built[0].registry is None
