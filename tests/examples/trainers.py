"""Running an example trainer as the training Job runs it (docs/trainer-contract.md): ``python train.py``
in a fresh environment that holds the contract's variables and little else, its outputs laid out as in
the model store. Shared by the iris-forest and tabular-text tests; the digits example has its own
(tests/examples/digits/helpers.py), since it is a package run with ``-m``."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import onnxruntime as ort
import yaml

from mlapp import contract

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# Generous: a run takes seconds, but two cores are shared with whatever else runs.
TIMEOUT = 180
# What a trainer's output directory holds after exit 0: the contract's four files and nothing else
# (no temporary file left behind).
OUTPUT_FILES = frozenset(
    {
        contract.TRAINER_MODEL_FILE,
        contract.TRAINER_METRICS_FILE,
        contract.TRAINER_LABELS_FILE,
        contract.TRAINER_SERVING_FILE,
    }
)


def trainer_script(example: str) -> Path:
    return EXAMPLES / example / "train.py"


@dataclass(frozen=True)
class Run:
    """Where one version's run keeps its files, as the Job lays them out in the store."""

    model: str
    version: str
    output_dir: Path
    checkpoint_dir: Path
    record: Path  # the version's commit record: the trainer exits 0 at once when it exists
    home: Path

    @classmethod
    def under(cls, root: Path, model: str, version: str = "v1") -> Run:
        store = str(root / "store")
        home = root / "home"  # HOME, /tmp in the pod
        home.mkdir(parents=True, exist_ok=True)
        return cls(
            model,
            version,
            Path(contract.run_path(store, model, version)),
            Path(contract.checkpoint_path(store, model, version)),
            Path(contract.record_path(store, model, version)),
            home,
        )

    def files(self) -> set[str]:
        return {p.name for p in self.output_dir.iterdir()} if self.output_dir.exists() else set()

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = json.loads((self.output_dir / contract.TRAINER_METRICS_FILE).read_text())
        return values

    def labels(self) -> list[str]:
        return (self.output_dir / contract.TRAINER_LABELS_FILE).read_text().splitlines()

    def serving(self) -> Any:
        return json.loads((self.output_dir / contract.TRAINER_SERVING_FILE).read_text())

    def session(self) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(self.output_dir / contract.TRAINER_MODEL_FILE), providers=["CPUExecutionProvider"]
        )


def contract_env(run: Run, device: str = "cpu", **params: str | int | float) -> dict[str, str]:
    """A fresh environment: PATH, HOME and the variables the training Job sets, none of the caller's.

    ``params``: the training parameters by their variable's suffix (``seed=42`` sets MLAPP_SEED).
    """
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(run.home),
        # These models are tiny: one intra-op thread is faster than two fighting over a 2-core machine.
        "OMP_NUM_THREADS": "1",
        contract.ENV_OUTPUT_DIR: str(run.output_dir),
        contract.ENV_CHECKPOINT_DIR: str(run.checkpoint_dir),
        contract.ENV_MODEL_RECORD: str(run.record),
        contract.ENV_MODEL_NAME: run.model,
        contract.ENV_MODEL_VERSION: run.version,
        contract.ENV_DEVICE: device,
        contract.ENV_LOG_LEVEL: "info",
    }
    env.update({f"MLAPP_{name.upper()}": str(value) for name, value in params.items()})
    return env


def run_trainer(example: str, env: Mapping[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python examples/<example>/train.py ARGS`` in ``cwd``, as the image's ENTRYPOINT runs it."""
    return subprocess.run(
        [sys.executable, str(trainer_script(example)), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


class Running:
    """A trainer started in the background, its log read line by line without blocking on it."""

    def __init__(self, example: str, env: Mapping[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(trainer_script(example))],
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        """The first log line holding ``text``; fails if the trainer exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the trainer exited before logging {text!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if text in line:
                return line
        self.process.kill()
        raise AssertionError(f"no {text!r} in the log after {timeout}s:\n{''.join(self.lines)}")

    def finish(self, timeout: float) -> tuple[int, str]:
        """The exit code and the whole log, once it exits within ``timeout`` seconds."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        while (line := self._queue.get(timeout=TIMEOUT)) is not None:
            self.lines.append(line)
        return code, "".join(self.lines)


@cache
def load_trainer(example: str) -> ModuleType:
    """An example's train.py as a module, for its data functions: the tests rebuild the held-out rows the
    trainer measured on from the same seed. No bytecode is written into the example's directory."""
    name = f"example_{example.replace('-', '_')}_train"
    spec = importlib.util.spec_from_file_location(name, trainer_script(example))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: dataclasses look their module up in sys.modules
    # (https://docs.python.org/3/library/importlib.html#importing-a-source-file-directly).
    sys.modules[name] = module
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


def stack_config(example: str) -> dict[str, Any]:
    """The example's stack-config.yaml: the ``config:`` block a user merges into Pulumi.<stack>.yaml."""
    document = yaml.safe_load((EXAMPLES / example / "stack-config.yaml").read_text())
    config: dict[str, Any] = document["config"]
    return config


def gate_holds(metrics: Mapping[str, float], config: Mapping[str, Any]) -> bool:
    """Whether ``metrics`` pass the stack config's gate as the publisher judges it (docs/trainer-contract.md,
    MLAPP_GATE_DIRECTION: maximize means at least the threshold, minimize at most)."""
    value = metrics[config["mlstack:gateMetric"]]
    threshold = float(config["mlstack:gateThreshold"])
    assert math.isfinite(value)
    return value >= threshold if config["mlstack:gateDirection"] == "maximize" else value <= threshold


def signature(
    session: ort.InferenceSession,
) -> tuple[list[tuple[str, str, list[Any]]], list[tuple[str, str, list[Any]]]]:
    """The model's inputs and outputs as (name, ONNX type, shape); a dynamic dimension is its name."""
    return (
        [(i.name, i.type, list(i.shape)) for i in session.get_inputs()],
        [(o.name, o.type, list(o.shape)) for o in session.get_outputs()],
    )
