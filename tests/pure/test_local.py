"""The local target's kubeconfig handling: one context kept, merged as kubectl merges, no other cluster's secrets."""

from __future__ import annotations

import pytest
import yaml

from components.local import KubeconfigError, minify_kubeconfig
from tests.support import kubeconfig_document


def test_current_context_is_used_and_nothing_else_is_kept() -> None:
    name, text = minify_kubeconfig([kubeconfig_document("kind-ml", "kind-ml", "prod-aks")], None)
    assert name == "kind-ml"
    minified = yaml.safe_load(text)
    assert minified["current-context"] == "kind-ml"
    assert [c["name"] for c in minified["contexts"]] == ["kind-ml"]
    assert [c["name"] for c in minified["clusters"]] == ["kind-ml-cluster"]
    assert "secret-of-prod-aks" not in text, "another cluster's credentials would end up in the stack's state"


def test_named_context_wins_over_current() -> None:
    name, text = minify_kubeconfig([kubeconfig_document("kind-ml", "kind-ml", "minikube")], "minikube")
    assert name == "minikube"
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://minikube:6443"


def test_files_merge_like_kubectl_first_definition_wins() -> None:
    first = kubeconfig_document("kind-ml", "kind-ml")
    second = kubeconfig_document("other", "kind-ml", "other").replace("https://kind-ml:6443", "https://shadowed:6443")
    name, text = minify_kubeconfig([first, second], None)
    assert name == "kind-ml", "current-context comes from the first file that sets it"
    assert "shadowed" not in text


def test_unknown_context_lists_the_available_ones() -> None:
    with pytest.raises(KubeconfigError, match=r"mlstack:kubeContext = 'kind-typo'.*available: kind-ml, minikube"):
        minify_kubeconfig([kubeconfig_document("kind-ml", "kind-ml", "minikube")], "kind-typo", "~/.kube/config")


def test_no_current_context_says_how_to_pick_one() -> None:
    with pytest.raises(KubeconfigError, match=r"no current context.*kubeContext"):
        minify_kubeconfig([kubeconfig_document(None, "kind-ml")], None)
