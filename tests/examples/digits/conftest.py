"""Fixtures for the digits trainer's tests: one run trained once per session, as the Job runs it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from digits.data import load_digits_dataset

from .helpers import SEED, Run, contract_env, run_trainer


@dataclass(frozen=True)
class TrainedRun:
    run: Run
    log: str


@dataclass(frozen=True)
class HeldOut:
    images: npt.NDArray[np.float32]  # [N, 1, 8, 8] in [0, 1]
    labels: npt.NDArray[np.int64]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """The run every read-only test shares: 6 epochs, seed 7, the gate accuracy>=0.9, every input from
    the contract's environment (no flag)."""
    run = Run.under(tmp_path_factory.mktemp("store"), "t1")
    env = contract_env(epochs=6, batch_size=32, learning_rate=0.003, seed=SEED, gate="accuracy>=0.9")
    result = run_trainer(run, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return TrainedRun(run, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def held_out() -> HeldOut:
    data = load_digits_dataset(SEED)  # the trainer's own split for the same seed
    return HeldOut(data.x_test, data.y_test)
