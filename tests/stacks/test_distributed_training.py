"""A multi-node training Job's own arguments, run for real on this machine's CPU (gloo).

The gke stack with trainNodes 2 is rendered under mocks; each "pod" here is the Job's container
command and args as the kubelet would run them, with what differs from a cluster replaced and nothing
else: the completion index, index 0's address (loopback: no cluster DNS here), a free port, a
temporary model store and the CPU. Then:

- ``torchrun --nproc-per-node 2`` with the same trainer arguments trains, passes the gate, and the
  model it publishes is served and answers correctly;
- two pods: one killed mid-run (its whole process tree, as a node loss would) makes the other exit
  EXIT_PEER at once; run again, both resume from the same step and publish exactly the model of an
  uninterrupted run;
- a gate the model cannot pass makes every pod exit EXIT_GATE, which fails the Job at once;
- SIGTERM on one pod (a Spot eviction) stops every rank after the same step, checkpointed by rank 0.

Every process is bounded by a timeout and killed with its whole tree on failure, so a rendezvous that
hangs cannot hang the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch

from components import workloads
from mlapp import contract, store
from mlapp.data import load_digits_dataset
from tests.app.helpers import PASSWORD, USER, Server, app_env, free_port
from tests.support import JOB, SERVICE, SharedRun, container
from tools import harness

# Two pods; five epochs and a gate of 0.9 keep the suite quick (the shipped ten reach 0.98 here).
MULTI = {"trainNodes": 2, "gpuMaxNodes": 2, "trainEpochs": 5, "minAccuracy": "0.9"}
TIMEOUT = 180  # seconds any one run may take here; a hung rendezvous fails the test instead of the suite
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Process:
    """A command as a pod runs it: its output in a file, its whole tree killed together."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            command, env=app_env(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout}s:\n{self.log}") from None
        finally:
            self._log.close()

    def wait_for_log(self, text: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared:\n{self.log}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the process and everything under it, as when a node is lost."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Every process a test starts; whatever is left is killed with its tree."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.kill()


@dataclass(frozen=True)
class JobPod:
    """The Job's container as rendered: its command and args, and the Service that names its pods."""

    command: list[str]
    args: list[str]
    service: str
    version: str
    model_name: str
    seed: int
    min_accuracy: float

    def trainer_args(self, store: Path) -> list[str]:
        """The trainer's arguments (after ``-m mlapp.train``), on this machine's store and CPU."""
        args = self.args[self.args.index("mlapp.train") + 1 :]
        return _on_this_machine(args, store)

    def as_pod(self, index: int, store: Path, port: int) -> list[str]:
        """The command pod ``index`` runs: the kubelet's $(VAR) expansion, then loopback for index 0's name."""
        env = {workloads.JOB_COMPLETION_INDEX: str(index), contract.ENV_JOB_NAME: "mlstack-train-x1y2"}
        args = list(self.args)
        for name, value in env.items():
            args = [arg.replace(f"$({name})", value) for arg in args]
        master = args.index("--master-addr") + 1
        assert args[master] == f"mlstack-train-x1y2-0.{self.service}", args[master]
        args[master] = "127.0.0.1"  # no cluster DNS here
        args[args.index("--master-port") + 1] = str(port)
        assert self.command[:3] == ["python", "-m", "mlapp.launch"], self.command
        return [sys.executable, *self.command[1:], *_on_this_machine(args, store)]


def _on_this_machine(args: list[str], store: Path) -> list[str]:
    moved = list(args)
    moved[moved.index("--model-dir") + 1] = str(store)
    device = moved.index("--device") + 1
    assert moved[device] == "cuda", "a pod of the GPU pool must train on its GPU"
    moved[device] = "cpu"  # this machine has no GPU (tests/app/test_cuda.py covers --device cuda)
    return moved


def job_pod(shared_run: SharedRun, overrides: dict[str, Any] | None = None) -> JobPod:
    result = shared_run("gke", {**MULTI, **(overrides or {})})
    trainer = container(result.one(JOB))
    args = list(trainer["args"])  # a copy: the shared run is never changed
    trainer_args = args[args.index("mlapp.train") + 1 :]
    return JobPod(
        command=list(trainer["command"]),
        args=args,
        service=harness.manifest(result.one(SERVICE, "-trainers"))["metadata"]["name"],
        version=result.exports["modelVersion"],
        model_name=trainer_args[trainer_args.index("--model-name") + 1],
        seed=int(trainer_args[trainer_args.index("--seed") + 1]),
        min_accuracy=float(trainer_args[trainer_args.index("--min-accuracy") + 1]),
    )


def start_pods(pod: JobPod, store: Path, processes: list[Process], run: str = "") -> list[Process]:
    """Both pods of the Job, on a fresh rendezvous port, logging to ``pod<i><run>.log`` under ``store``."""
    port = free_port()
    pods = [Process(pod.as_pod(i, store, port), store / f"pod{i}{run}.log") for i in range(2)]
    processes.extend(pods)
    return pods


@dataclass(frozen=True)
class Published:
    directory: Path
    log: str


@pytest.fixture(scope="module")
def two_process_model(tmp_path_factory: pytest.TempPathFactory, shared_run: SharedRun) -> Published:
    """``torchrun --nproc-per-node 2`` with the Job's trainer arguments, uninterrupted."""
    pod = job_pod(shared_run)
    tmp = tmp_path_factory.mktemp("torchrun")
    run = Process([str(TORCHRUN), "--nproc-per-node", "2", "-m", "mlapp.train", *pod.trainer_args(tmp)], tmp / "log")
    assert run.wait() == contract.EXIT_OK, run.log  # wait() kills the tree if it overruns
    return Published(tmp / pod.model_name / pod.version, run.log)


def outputs(model: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": images})[0]
    return result


def test_two_processes_under_torchrun_pass_the_gate_and_the_model_serves(
    two_process_model: Published, shared_run: SharedRun, tmp_path: Path
) -> None:
    pod = job_pod(shared_run)
    log = two_process_model.log
    # Both ranks trained, each logging its rank; rank 0 alone judged and published.
    assert "[rank 0/2]" in log
    assert "[rank 1/2]" in log
    assert re.search(r"\[rank 0/2\] published ", log), log
    assert not re.search(r"\[rank 1/2\] (published|checkpoint saved|Accuracy at step)", log), log
    meta = json.loads((two_process_model.directory / "metadata.json").read_text(encoding="utf-8"))
    assert meta["accuracy"] >= pod.min_accuracy
    assert meta["version"] == pod.version

    held_out = load_digits_dataset(pod.seed)  # the trainer's own split for the Job's seed
    images = held_out.x_test[:120]
    server = Server(
        tmp_path, two_process_model.directory.parents[1], MLAPP_MODEL_NAME=pod.model_name,
        MLAPP_MODEL_VERSION=pod.version,
    )  # fmt: skip
    try:
        server.wait_for(contract.READY_PATH)
        body = {"inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32",
                            "data": images.ravel().tolist()}]}  # fmt: skip
        response = httpx.post(
            f"{server.url}/v2/models/{pod.model_name}/infer", auth=(USER, PASSWORD), json=body, timeout=30
        )
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    probs = np.asarray(out["data"], dtype=np.float32).reshape(len(images), -1)
    assert float((probs.argmax(1) == held_out.y_test[:120]).mean()) >= pod.min_accuracy
    np.testing.assert_allclose(probs, outputs(two_process_model.directory, images), atol=1e-5)


def test_a_killed_pod_stops_the_other_and_every_rank_resumes_from_the_same_step(
    two_process_model: Published, shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    pod = job_pod(shared_run)
    first = start_pods(pod, tmp_path, processes, "-1")
    first[0].wait_for_log("checkpoint saved at step")
    first[1].kill()
    # The survivor does not wait for the lost rank: it exits at once, saying its peer failed, so the
    # Job recreates it without counting a failure.
    assert first[0].wait(timeout=60) == contract.EXIT_PEER, first[0].log
    assert "lost contact with the other ranks" in first[0].log
    assert not (tmp_path / pod.model_name / pod.version).exists()

    again = start_pods(pod, tmp_path, processes, "-2")
    codes = [p.wait() for p in again]
    assert codes == [contract.EXIT_OK, contract.EXIT_OK], "\n".join(p.log for p in again)
    resumed = [re.search(r"resuming from checkpoint \S+ at step (\d+)", p.log) for p in again]
    assert all(resumed), "\n".join(p.log for p in again)
    steps = {int(m.group(1)) for m in resumed if m}
    assert len(steps) == 1, f"the ranks resumed from different steps: {steps}"
    (step,) = steps
    assert step > 0
    trained = [int(n) for n in re.findall(r"step (\d+) epoch", again[0].log)]
    assert trained
    assert min(trained) > step, "steps before the checkpoint were trained again"

    # Exactly the model of the uninterrupted two-process run: same data, same shards, same steps.
    published = tmp_path / pod.model_name / pod.version
    meta = json.loads((published / "metadata.json").read_text(encoding="utf-8"))
    uninterrupted = json.loads((two_process_model.directory / "metadata.json").read_text(encoding="utf-8"))
    assert meta["accuracy"] == uninterrupted["accuracy"]
    assert meta["parameters"]["steps"] == uninterrupted["parameters"]["steps"]
    images = load_digits_dataset(pod.seed).x_test[:64]
    np.testing.assert_allclose(outputs(published, images), outputs(two_process_model.directory, images), atol=1e-6)


def test_a_gate_the_model_misses_fails_every_pod_with_the_gate_code(
    shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    pod = job_pod(shared_run, {"trainEpochs": 1, "minAccuracy": "1"})
    pods = start_pods(pod, tmp_path, processes)
    codes = [p.wait() for p in pods]
    assert codes == [contract.EXIT_GATE, contract.EXIT_GATE], "\n".join(p.log for p in pods)
    assert "is under --min-accuracy" in pods[0].log
    assert not (tmp_path / pod.model_name / pod.version).exists()


def test_sigterm_on_one_pod_stops_every_rank_after_the_same_step_with_rank_0s_checkpoint(
    shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    """A Spot eviction or drain of one pod: the kubelet sends its container SIGTERM."""
    pod = job_pod(shared_run)
    pods = start_pods(pod, tmp_path, processes)
    pods[0].wait_for_log("checkpoint saved at step")
    pods[1].proc.send_signal(signal.SIGTERM)
    evicted, other = pods[1].wait(timeout=60), pods[0].wait(timeout=60)
    # The evicted pod's failure is ignored for its DisruptionTarget condition, the other's for its code.
    assert evicted == contract.EXIT_ERROR, pods[1].log
    assert other == contract.EXIT_PEER, pods[0].log
    stopped = re.search(r"\[rank 1/2\] stopped by SIGTERM at step (\d+)", pods[1].log)
    told = re.search(r"\[rank 0/2\] another rank was stopped by SIGTERM at step (\d+)", pods[0].log)
    assert stopped, pods[1].log
    assert told, pods[0].log
    assert stopped.group(1) == told.group(1), "the ranks stopped after different steps"
    saved = torch.load(store.checkpoint_path(tmp_path, pod.model_name, pod.version), weights_only=True)
    assert saved["step"] == int(told.group(1)), "rank 0 did not checkpoint the step every rank stopped at"
