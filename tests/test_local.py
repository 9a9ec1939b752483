"""The local target: one kubeconfig context, no GPU, no external IP, no other cluster's credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.local import KubeconfigError, LocalCluster, LocalClusterArgs, minify_kubeconfig
from tools import harness


def kubeconfig(current: str | None, *names: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": current,
            "contexts": [{"name": n, "context": {"cluster": f"{n}-cluster", "user": f"{n}-user"}} for n in names],
            "clusters": [{"name": f"{n}-cluster", "cluster": {"server": f"https://{n}:6443"}} for n in names],
            "users": [{"name": f"{n}-user", "user": {"token": f"secret-of-{n}"}} for n in names],
        }
    )


def test_current_context_is_used_and_nothing_else_is_kept() -> None:
    name, text = minify_kubeconfig([kubeconfig("kind-ml", "kind-ml", "prod-aks")], None)
    assert name == "kind-ml"
    minified = yaml.safe_load(text)
    assert minified["current-context"] == "kind-ml"
    assert [c["name"] for c in minified["contexts"]] == ["kind-ml"]
    assert [c["name"] for c in minified["clusters"]] == ["kind-ml-cluster"]
    assert "secret-of-prod-aks" not in text, "another cluster's credentials would end up in the stack's state"


def test_named_context_wins_over_current() -> None:
    name, text = minify_kubeconfig([kubeconfig("kind-ml", "kind-ml", "minikube")], "minikube")
    assert name == "minikube"
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://minikube:6443"


def test_files_merge_like_kubectl_first_definition_wins() -> None:
    first = kubeconfig("kind-ml", "kind-ml")
    second = kubeconfig("other", "kind-ml", "other").replace("https://kind-ml:6443", "https://shadowed:6443")
    name, text = minify_kubeconfig([first, second], None)
    assert name == "kind-ml", "current-context comes from the first file that sets it"
    assert "shadowed" not in text


def test_unknown_context_lists_the_available_ones() -> None:
    with pytest.raises(KubeconfigError, match=r"mlstack:kubeContext = 'kind-typo'.*available: kind-ml, minikube"):
        minify_kubeconfig([kubeconfig("kind-ml", "kind-ml", "minikube")], "kind-typo", "~/.kube/config")


def test_no_current_context_says_how_to_pick_one() -> None:
    with pytest.raises(KubeconfigError, match=r"no current context.*kubeContext"):
        minify_kubeconfig([kubeconfig(None, "kind-ml")], None)


def test_missing_kubeconfig_says_how_to_get_a_cluster(tmp_path: Path) -> None:
    args = LocalClusterArgs(kubeconfig_paths=(str(tmp_path / "absent"),))
    with pytest.raises(KubeconfigError, match=r"no kubeconfig found.*kind create cluster"):
        harness.run(lambda: LocalCluster("local", args), {})


def test_local_cluster_fulfils_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig("kind-ml", "kind-ml", "prod-aks"), encoding="utf-8")
    built: list[LocalCluster] = []
    args = LocalClusterArgs(kubeconfig_paths=(str(path),), registry="localhost:5001")
    result = harness.run(lambda: built.append(LocalCluster("local", args)), {})
    cluster = built[0]
    assert cluster.gpu is None
    assert cluster.external_load_balancer is False
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
    path.write_text(kubeconfig("kind-ml", "kind-ml"), encoding="utf-8")
    built: list[LocalCluster] = []
    harness.run(lambda: built.append(LocalCluster("local", LocalClusterArgs(kubeconfig_paths=(str(path),)))), {})
    assert built[0].registry is None
