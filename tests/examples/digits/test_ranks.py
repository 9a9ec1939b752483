"""The trainer's rank-side rules, without starting a group: how a batch is shared, what counts as a lost peer;
and ``python -m digits``, the image's entrypoint, which starts torchrun when the Job asks for several nodes,
run for real as two pods of such a Job on this machine.

The group also runs for real in tests/stacks/test_distributed_training.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from digits import __main__ as entrypoint
from digits import contract, fit, launch, train
from digits.data import load_digits_dataset
from digits.launch import Rank

from .helpers import Run, trainer_env

SEED = 42


@pytest.mark.parametrize(("world", "batch"), [(2, 32), (3, 32), (2, 7), (4, 3)])
def test_the_ranks_shares_of_a_batch_are_the_whole_batch_once(world: int, batch: int) -> None:
    idx = torch.randperm(1000)[:batch]
    shares = [fit.RankGroup(Rank(r, world)).shard(idx) for r in range(world)]
    together = torch.cat(shares)
    assert sorted(together.tolist()) == sorted(idx.tolist())
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_one_process_takes_the_whole_batch() -> None:
    idx = torch.arange(10)
    assert torch.equal(fit.RankGroup().shard(idx), idx)


@pytest.mark.parametrize(
    "error",
    [
        # What gloo raised here when the peer's process was killed, and when it went silent.
        RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                     "[127.0.0.1]:32147: Connection reset by peer."),
        RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out "
                     "waiting 3000ms for recv operation to complete"),
        dist.DistBackendError("NCCL communicator was aborted"),
        dist.DistNetworkError("Connection was likely closed"),
    ],
)  # fmt: skip
def test_a_broken_group_is_a_lost_peer(error: Exception) -> None:
    assert fit.lost_peer(error)


@pytest.mark.parametrize(
    "error", [RuntimeError("CUDA out of memory"), ValueError("gloo/transport/ in a value error"), OSError("disk full")]
)
def test_this_ranks_own_failure_is_not_a_lost_peer(error: Exception) -> None:
    assert not fit.lost_peer(error)


def test_a_sigterm_landing_while_the_ranks_agree_stops_at_the_next_step_with_everyone_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal arrives after this rank told the others "not stopping" for a step: it must not leave
    at that step (the others would wait on it, then see a lost peer), but at the next, having told them."""
    told: list[bool] = []

    def any_stopped(self: fit.RankGroup, stopped: bool) -> bool:
        told.append(stopped)
        if len(told) == 3:  # the signal lands just after the third step's agreement
            os.kill(os.getpid(), signal.SIGTERM)
        return stopped

    monkeypatch.setattr(fit.RankGroup, "any_stopped", any_stopped)
    params = fit.Params(epochs=1, batch_size=32, learning_rate=0.003, seed=SEED, data="sklearn-digits")
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(fit.Stopped, match="at step 4;"):
        fit.fit(load_digits_dataset(SEED), params, checkpoint, 1000, 1000, device=torch.device("cpu"))
    assert told == [False, False, False, True], "the rank left without telling the others"
    assert torch.load(checkpoint, weights_only=True)["step"] == 4


# ---------------------------------------------------------------- python -m digits


@pytest.mark.parametrize(("value", "nodes"), [("", 1), ("1", 1), ("2", 2), ("1:4", 4), (" 3 ", 3)])
def test_the_nodes_torchrun_is_asked_for(value: str, nodes: int) -> None:
    assert entrypoint.nodes({"PET_NNODES": value}) == nodes


@pytest.mark.parametrize(
    ("env", "runs"),
    [
        ({}, "train"),
        ({"PET_NNODES": "1"}, "train"),
        ({"PET_NNODES": "2"}, "launch"),
        # A worker torchrun started inherits the pod's PET_NNODES: it is a rank, and trains.
        ({"PET_NNODES": "2", "WORLD_SIZE": "2", "RANK": "1"}, "train"),
    ],
)
def test_the_entrypoint_runs_torchrun_for_several_nodes_and_the_trainer_otherwise(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], runs: str
) -> None:
    called: list[tuple[str, list[str]]] = []

    def recorder(name: str) -> Callable[[list[str]], int]:
        def main(argv: list[str]) -> int:
            called.append((name, list(argv)))
            return 0

        return main

    monkeypatch.setattr(train, "main", recorder("train"))
    monkeypatch.setattr(launch, "main", recorder("launch"))
    assert entrypoint.main(["--epochs", "1"], env=env) == 0
    expected = ["-m", "digits.train", "--epochs", "1"] if runs == "launch" else ["--epochs", "1"]
    assert called == [(runs, expected)]


def test_a_node_count_torchrun_cannot_read_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main([], env={"PET_NNODES": "two"}) == contract.EXIT_ERROR
    assert "PET_NNODES must be N or MIN:MAX nodes, got 'two'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(("gate", "code"), [("0", contract.EXIT_OK), ("1.0", contract.EXIT_GATE)])
def test_two_pods_of_a_multi_node_job_train_as_one_and_exit_with_rank_0s_verdict(
    tmp_path: Path, gate: str, code: int
) -> None:
    """Each pod runs the image's ``python -m digits`` with only what the Job sets: the contract's variables and
    torchrun's PET_* (docs/trainer-contract.md, "Several nodes"). Rank 0 alone writes the outputs; both pods
    exit with its verdict, 2 through torchrun included (digits.launch maps the workers' codes back)."""
    run = Run.under(tmp_path, "ranks")
    port = _free_port()
    pods = []
    for node in (0, 1):
        env = trainer_env(
            run, "ranks",
            MLAPP_EPOCHS="1", MLAPP_BATCH_SIZE="64", MLAPP_LEARNING_RATE="0.01", MLAPP_SEED="0",
            MLAPP_GATE_METRIC="accuracy", MLAPP_GATE_DIRECTION="maximize", MLAPP_GATE_THRESHOLD=gate,
            PET_NNODES="2", PET_NPROC_PER_NODE="1", PET_NODE_RANK=str(node), PET_MASTER_ADDR="127.0.0.1",
            PET_MASTER_PORT=str(port), PET_MAX_RESTARTS="0",
        )  # fmt: skip
        log = (tmp_path / f"pod-{node}.log").open("w")
        pods.append((subprocess.Popen([sys.executable, "-m", "digits"], env=env, stdout=log, stderr=log), log))
    for pod, log in pods:
        pod.wait(timeout=240)
        log.close()
    logs = [(tmp_path / f"pod-{node}.log").read_text(encoding="utf-8") for node in (0, 1)]
    assert [pod.returncode for pod, _ in pods] == [code, code], "\n\n".join(logs)
    assert "[rank 0/2]" in logs[0]
    assert "[rank 1/2]" in logs[1]
    written = sorted(p.name for p in run.output_dir.iterdir())
    if code == contract.EXIT_OK:
        assert written == ["labels.txt", "metrics.json", "model.onnx", "serving.json"]
        metrics = json.loads((run.output_dir / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["steps"] == 23  # one epoch of 1438 examples in global batches of 64, shared by the ranks
    else:
        assert written == []
        assert "misses the gate accuracy>=1; writing no outputs" in logs[0]
