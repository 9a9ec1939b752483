"""Fixtures every level shares: the offline harness, set up per test (never at import time).

- ``run_stack``: a fresh whole-stack run, for a test that brings its own mocks or
  must see the program run (what it reads, that two runs agree);
- ``shared_run`` and ``shipped``: whole-stack runs made once per session and shared
  by every test that only reads them; a test that changed one fails the session;
- ``stack_problems``: the config problems of a stack, proving nothing was created.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stack.config import ConfigError
from tests.support import STACKS, CountingMocks, RunStack, SharedRun, StackProblems
from tools import harness


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kind-like kubeconfig in KUBECONFIG, so the local target builds offline."""
    path = harness.fake_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def run_stack(kubeconfig: Path) -> RunStack:
    """A fresh run of the whole program for a stack under mocks: ``run_stack("local", overrides={...})``."""

    def run(
        stack: str,
        overrides: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        mocks: harness.StackMocks | None = None,
    ) -> harness.StackRun:
        return harness.run_stack(stack, overrides=overrides, secrets=secrets, mocks=mocks)

    return run


def _key(values: Mapping[str, Any] | None) -> str:
    return json.dumps(values or {}, sort_keys=True)


@pytest.fixture(scope="session")
def shared_run() -> Iterator[SharedRun]:
    """Whole-stack runs made once per session for each (stack, overrides, secrets), shared read-only.

    Each run is copied when made and compared at the end of the session: a test
    that changed a shared run fails it, naming the run (copy what you change:
    ``harness.manifest`` and ``harness.plain`` return new objects).
    """
    runs: dict[tuple[str, str, str], harness.StackRun] = {}
    pristine: dict[tuple[str, str, str], harness.StackRun] = {}

    def run(
        stack: str, overrides: Mapping[str, Any] | None = None, secrets: Mapping[str, str] | None = None
    ) -> harness.StackRun:
        key = (stack, _key(overrides), _key(secrets))
        if key not in runs:
            with harness.offline_kubeconfig():
                runs[key] = harness.run_stack(stack, overrides=overrides, secrets=secrets)
            pristine[key] = copy.deepcopy(runs[key])
        return runs[key]

    yield run
    changed = [key for key, result in runs.items() if result != pristine[key]]
    if changed:
        pytest.fail(f"tests changed shared stack runs (stack, overrides, secrets): {changed}")


@pytest.fixture(scope="session")
def shipped(shared_run: SharedRun) -> dict[str, harness.StackRun]:
    """Every shipped stack as it ships, run once per session: read, never change."""
    return {stack: shared_run(stack) for stack in STACKS}


@pytest.fixture
def stack_problems(kubeconfig: Path) -> StackProblems:
    """The config problems of a stack with overrides, as printed: ``stack_problems("gke", trainerCuda="13.0")``.

    Asserts that the program was refused before it created any resource.
    """

    def problems(stack: str, **overrides: Any) -> list[str]:
        mocks = CountingMocks()
        with pytest.raises(ConfigError) as caught:
            harness.run_stack(stack, overrides=overrides, mocks=mocks)
        assert mocks.created == [], f"{stack}: resources created before the config was refused: {mocks.created}"
        return caught.value.problems

    return problems
