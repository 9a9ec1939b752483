"""The policy pack's rules (policy/rules.py) as plain functions, where no stack is needed to judge them.

The rules on the shipped stacks: tests/stacks/test_policy.py; the pack as the
engine runs it: tests/project/test_policy_pack.py.
"""

from __future__ import annotations

import pytest

from components import target
from mlstack import catalogue
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
    for size in catalogue.AZURE_GPU_SIZES:
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
