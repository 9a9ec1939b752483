"""Running the digits trainer as the training Job runs it: ``python -m digits.train`` with the trainer
contract's environment (docs/trainer-contract.md), its outputs read back from the output directory."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from digits import contract

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "digits"
MODEL_NAME = "digits"
SEED = 7
# Small enough to train in a few seconds on 2 cores, good enough for >90% held out.
TRAIN_ARGS = ["--epochs", "6", "--batch-size", "32", "--learning-rate", "0.003"]
GATE = "accuracy>=0.9"
# `make train`'s parameters, exactly (the Makefile's train target).
MAKE_TRAIN_ARGS = ["--epochs", "10", "--batch-size", "32", "--learning-rate", "0.003", "--gate", GATE, "--seed", "0"]


@dataclass(frozen=True)
class Run:
    """Where one version's run keeps its files, as the Job lays them out in the store."""

    output_dir: Path
    checkpoint_dir: Path
    record: Path  # the version's commit record: the trainer exits 0 at once when it exists

    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_dir / "checkpoint.pt"

    @classmethod
    def under(cls, root: Path, version: str) -> Run:
        """The store's layout (app/mlapp/contract.py: run_path, checkpoint_path, record_path)."""
        model = root / MODEL_NAME
        return cls(model / ".runs" / version, model / ".checkpoints" / version, model / version / "metadata.json")


def trainer_env(run: Run | None = None, version: str = "t1", **extra: str) -> dict[str, str]:
    """The environment of a trainer process: this interpreter's, ``examples/digits`` importable, no
    MLAPP_* of the caller's, and, for a ``run``, the contract's variables the Job sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLAPP_", "PET_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # These models are tiny: one intra-op thread is faster than two fighting
    # over a 2-core CI machine, and keeps the suite's time steady.
    env["OMP_NUM_THREADS"] = "1"
    if run is not None:
        env.update(
            {
                contract.ENV_OUTPUT_DIR: str(run.output_dir),
                contract.ENV_CHECKPOINT_DIR: str(run.checkpoint_dir),
                contract.ENV_MODEL_RECORD: str(run.record),
                contract.ENV_MODEL_NAME: MODEL_NAME,
                contract.ENV_MODEL_VERSION: version,
                contract.ENV_DEVICE: "cpu",
            }
        )
    env.update(extra)
    return env


def run_trainer(
    run: Run | None,
    *args: str,
    version: str = "t1",
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    module: str = "digits.train",
    wrapper: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m digits.train ARGS`` with ``run``'s contract environment (and ``env`` on top);
    ``wrapper``: a script that runs the module (tests/app/gcsfuse_sim.py)."""
    return subprocess.run(
        [sys.executable, *(wrapper or []), "-m", module, *args],
        env=trainer_env(run, version, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def contract_env(epochs: int, batch_size: int, learning_rate: float, seed: int, gate: str | None) -> dict[str, str]:
    """The training parameters and the gate as the Job passes them: variables, not flags."""
    env = {
        contract.ENV_EPOCHS: str(epochs),
        contract.ENV_BATCH_SIZE: str(batch_size),
        contract.ENV_LEARNING_RATE: str(learning_rate),
        contract.ENV_SEED: str(seed),
    }
    if gate is not None:
        metric, _, threshold = gate.partition(">=")
        env |= {
            contract.ENV_GATE_METRIC: metric,
            contract.ENV_GATE_DIRECTION: "maximize",
            contract.ENV_GATE_THRESHOLD: threshold,
        }
    return env
