"""Shared fixtures: the offline mock harness, set up per test (never at import time)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError
from tools import harness

STACKS = ("local", "dev", "gke")  # every shipped Pulumi.<stack>.yaml


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kind-like kubeconfig in KUBECONFIG, so the local target builds offline."""
    path = harness.fake_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def run_stack(kubeconfig: Path) -> Callable[..., harness.StackRun]:
    """Run the whole program for a stack under mocks: ``run_stack("local", overrides={...})``."""

    def run(stack: str, **kwargs: Any) -> harness.StackRun:
        return harness.run_stack(stack, **kwargs)

    return run


@pytest.fixture
def stack_problems(kubeconfig: Path) -> Callable[..., list[str]]:
    """The config problems of a stack with overrides: ``stack_problems("gke", trainerCuda="13.0")``."""

    def problems(stack: str, **overrides: Any) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            harness.run_stack(stack, overrides=overrides)
        return caught.value.problems

    return problems
