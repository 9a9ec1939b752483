"""A multi-node training Job's own pods, run for real on this machine's CPU (gloo).

The gke stack with trainNodes 2 is rendered under mocks; each "pod" here is the digits example's image
as the kubelet would run it: its ENTRYPOINT (``python -m digits``: the Job names no command), with the
environment the Job gives it (tests/pods.py resolves it, the downward API answering the Job's name and
the pod's completion index), and what differs from a cluster replaced and nothing else: index 0's
address (loopback: no cluster DNS here), a free rendezvous port, a temporary model store and the CPU.
Then:

- two ranks under one torchrun (the pods' own PET_* variables, one node of two processes), uninterrupted,
  pass the gate; the publish Job's command publishes what rank 0 wrote, and the model is served and
  answers correctly;
- two pods: one killed mid-run (its whole process tree, as a node loss would) makes the other exit
  EXIT_PEER at once; run again, both resume from the same step and write exactly the model of an
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_digits

from components import workloads
from mlapp import contract, store
from mlapp.gate import Gate
from tests import pods
from tests.app.helpers import PASSWORD, USER, Server, free_port
from tests.support import JOB, SERVICE, TRAIN, SharedRun, container
from tools import harness

# Two pods; five epochs and a gate of 0.9 keep the suite quick (the shipped ten reach 0.98 here).
MULTI = {"trainNodes": 2, "gpuMaxNodes": 2, "trainEpochs": 5, "minAccuracy": "0.9"}
TIMEOUT = 180  # seconds any one run may take here; a hung rendezvous fails the test instead of the suite
JOB_NAME = "mlstack-train-x1y2"  # what the Job controller named the Job, as its pods' label says
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

    def __init__(self, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            pods.argv(command), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
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
    """The Job's pods as rendered, and the stack they belong to."""

    result: harness.StackRun
    service: str  # the headless Service that names them

    @property
    def version(self) -> str:
        version: str = self.result.exports["modelVersion"]
        return version

    def env(self, index: int, here: pods.Here, port: int) -> dict[str, str]:
        """Pod ``index``'s environment as its kubelet sets it, then index 0's name as loopback (no cluster
        DNS here) and the rendezvous on a free port."""
        env = here.trainer_env(self.result, workloads_fields(index))
        for name in (contract.ENV_MASTER_ADDR, contract.TORCHRUN_ENV[contract.ENV_MASTER_ADDR]):
            assert env[name] == f"{JOB_NAME}-0.{self.service}", (name, env[name])
            env[name] = "127.0.0.1"
        for name in (contract.ENV_MASTER_PORT, contract.TORCHRUN_ENV[contract.ENV_MASTER_PORT]):
            assert env[name] == str(contract.RENDEZVOUS_PORT), (name, env[name])
            env[name] = str(port)
        return env

    def command(self, here: pods.Here, env: Mapping[str, str]) -> list[str]:
        return here.trainer_command(self.result, pods.image_command(pods.DIGITS), env)


def workloads_fields(index: int) -> dict[str, str]:
    """What the downward API answers pod ``index`` of the Job: its Job's name and its completion index."""
    return {
        f"metadata.labels['{workloads.JOB_NAME_LABEL}']": JOB_NAME,
        f"metadata.annotations['{workloads.JOB_COMPLETION_INDEX_ANNOTATION}']": str(index),
    }


def job_pod(shared_run: SharedRun, overrides: dict[str, Any] | None = None) -> JobPod:
    result = shared_run("gke", {**MULTI, **(overrides or {})})
    service = harness.manifest(result.one(SERVICE, "-trainers"))["metadata"]["name"]
    return JobPod(result, service)


def start_pods(pod: JobPod, here: pods.Here, processes: list[Process], run: str = "") -> list[Process]:
    """Both pods of the Job, on a fresh rendezvous port, logging to ``pod<i><run>.log`` in the scratch directory."""
    port = free_port()
    started = []
    for index in range(2):
        env = pod.env(index, here, port)
        log = here.scratch / f"pod{index}{run}.log"
        started.append(Process(pod.command(here, env), pods.process_env(env, pods.DIGITS), log))
    processes.extend(started)
    return started


def sample(count: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Every n-th of scikit-learn's digits, as the example feeds them to its model ([N, 1, 8, 8], grey
    scaled to 0-1: its serving.json says so), with their labels: what the answers are checked by."""
    digits = load_digits()
    step = len(digits.target) // count
    images = (digits.images[::step][:count] / 16.0).astype(np.float32)[:, None, :, :]
    return images, digits.target[::step][:count]


def outputs(model: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images}
    result: np.ndarray = session.run(None, feed)[0]
    return result


@dataclass(frozen=True)
class Uninterrupted:
    """Two ranks trained without a fault, their outputs published."""

    here: pods.Here
    log: str
    metrics: dict[str, float]
    model: Path  # the published model file


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, shared_run: SharedRun) -> Uninterrupted:
    """Two ranks in one process tree: torchrun around the example's trainer, told by the Job's own PET_*
    variables, but one node of two processes: the group of two the two-pod runs form, with nothing between
    them to fail. Then the publish Job."""
    pod = job_pod(shared_run)
    here = pods.Here(tmp_path_factory.mktemp("uninterrupted"))
    env = pod.env(0, here, free_port())
    env |= {contract.TORCHRUN_ENV[contract.ENV_NUM_NODES]: "1", contract.TORCHRUN_ENV[contract.ENV_GPUS_PER_NODE]: "2"}
    command = [str(TORCHRUN), "-m", "digits.train"]  # no flag: torchrun reads PET_*
    run = Process(command, pods.process_env(env, pods.DIGITS), here.scratch / "log")
    assert run.wait() == contract.EXIT_OK, run.log  # wait() kills the tree if it overruns
    metrics = json.loads((Path(env[contract.ENV_OUTPUT_DIR]) / contract.TRAINER_METRICS_FILE).read_text())
    published = here.publish(pod.result)
    assert published.returncode == contract.EXIT_OK, published.stderr
    version = store.version_dir(here.models, "digits", pod.version)
    assert store.verify(version)["version"] == pod.version
    return Uninterrupted(here, run.log, metrics, version / store.MODEL_FILE)


def test_two_ranks_pass_the_gate_rank_0_writes_and_the_published_model_serves(
    uninterrupted: Uninterrupted, shared_run: SharedRun, tmp_path: Path
) -> None:
    pod = job_pod(shared_run)
    log = uninterrupted.log
    # Both ranks trained, each logging its rank; rank 0 alone wrote the outputs.
    assert "[rank 0/2]" in log
    assert "[rank 1/2]" in log
    assert re.search(r"\[rank 0/2\] wrote model ", log), log
    assert not re.search(r"\[rank 1/2\] (wrote model|checkpoint saved)", log), log
    gate = Gate.from_env(pods.pod_env(pod.result, container(pod.result.one(JOB, TRAIN)), workloads_fields(0)))
    assert gate is not None
    assert gate.passes(uninterrupted.metrics), uninterrupted.metrics

    images, labels = sample()
    server = Server(
        tmp_path, uninterrupted.here.models, MLAPP_MODEL_NAME="digits", MLAPP_MODEL_VERSION=pod.version,
    )  # fmt: skip
    try:
        server.wait_for(contract.READY_PATH)
        body = {"inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32",
                            "data": images.ravel().tolist()}]}  # fmt: skip
        response = httpx.post(f"{server.url}/v2/models/digits/infer", auth=(USER, PASSWORD), json=body, timeout=30)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    probs = np.asarray(out["data"], dtype=np.float32).reshape(len(images), -1)
    assert float((probs.argmax(1) == labels).mean()) >= gate.threshold
    np.testing.assert_allclose(probs, outputs(uninterrupted.model, images), atol=1e-5)


def test_a_killed_pod_stops_the_other_and_every_rank_resumes_from_the_same_step(
    uninterrupted: Uninterrupted, shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    pod = job_pod(shared_run)
    here = pods.Here(tmp_path)
    first = start_pods(pod, here, processes, "-1")
    first[0].wait_for_log("checkpoint saved at step")
    first[1].kill()
    # The survivor does not wait for the lost rank: it exits at once, saying its peer failed, so the
    # Job recreates it without counting a failure.
    assert first[0].wait(timeout=60) == contract.EXIT_PEER, first[0].log
    assert "lost contact with the other ranks" in first[0].log
    run = store.run_dir(here.models, "digits", pod.version)
    assert not (run / contract.TRAINER_METRICS_FILE).exists(), "a run that stopped wrote outputs"

    again = start_pods(pod, here, processes, "-2")
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

    # Exactly the model of the uninterrupted two-rank run: same data, same shards, same steps.
    metrics = json.loads((run / contract.TRAINER_METRICS_FILE).read_text(encoding="utf-8"))
    assert metrics == uninterrupted.metrics
    images, _ = sample(64)
    np.testing.assert_allclose(
        outputs(run / contract.TRAINER_MODEL_FILE, images), outputs(uninterrupted.model, images), atol=1e-6
    )


def test_a_gate_the_model_misses_fails_every_pod_with_the_gate_code(
    shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    pod = job_pod(shared_run, {"trainEpochs": 1, "minAccuracy": "1"})
    here = pods.Here(tmp_path)
    started = start_pods(pod, here, processes)
    codes = [p.wait() for p in started]
    assert codes == [contract.EXIT_GATE, contract.EXIT_GATE], "\n".join(p.log for p in started)
    assert "misses the gate" in started[0].log
    run = store.run_dir(here.models, "digits", pod.version)
    assert not (run / contract.TRAINER_METRICS_FILE).exists(), "outputs under the gate were written"


def test_sigterm_on_one_pod_stops_every_rank_after_the_same_step_with_rank_0s_checkpoint(
    shared_run: SharedRun, tmp_path: Path, processes: list[Process]
) -> None:
    """A Spot eviction or drain of one pod: the kubelet sends its container SIGTERM."""
    pod = job_pod(shared_run)
    here = pods.Here(tmp_path)
    started = start_pods(pod, here, processes)
    started[0].wait_for_log("checkpoint saved at step")
    started[1].proc.send_signal(signal.SIGTERM)
    evicted, other = started[1].wait(timeout=60), started[0].wait(timeout=60)
    # The evicted pod's failure is ignored for its DisruptionTarget condition, the other's for its code.
    assert evicted == contract.EXIT_ERROR, started[1].log
    assert other == contract.EXIT_PEER, started[0].log
    stopped = re.search(r"\[rank 1/2\] stopped by SIGTERM at step (\d+)", started[1].log)
    told = re.search(r"\[rank 0/2\] another rank was stopped by SIGTERM at step (\d+)", started[0].log)
    assert stopped, started[1].log
    assert told, started[0].log
    assert stopped.group(1) == told.group(1), "the ranks stopped after different steps"
    # Rank 0's resumable state, where the contract keeps it: the version's checkpoint directory.
    (checkpoint,) = store.checkpoint_dir(here.models, "digits", pod.version).iterdir()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == int(told.group(1)), "rank 0 did not checkpoint the step every rank stopped at"
