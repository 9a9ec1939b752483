"""The trainer's rank-side rules, without starting a group: how a batch is shared, what counts as a lost peer.

The group itself runs for real in tests/stacks/test_distributed_training.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from mlapp import fit
from mlapp.data import load_digits_dataset
from mlapp.launch import Rank

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
