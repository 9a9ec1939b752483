"""Multi-node training's pure parts: the pod's exit code from its workers', the rank from torchrun's
environment, the pool-size rule, and what the workloads refuse before creating anything."""

from __future__ import annotations

from dataclasses import replace

import pytest

from components import workloads
from components.target import ModelStore, StorageClaim
from digits.launch import Rank, exit_code
from mlapp import contract
from mlstack import rules
from tests.args import GPU, TRAINING, FakeTarget, workloads_args


@pytest.mark.parametrize(
    ("codes", "pod"),
    [
        ({0: contract.EXIT_GATE, 1: contract.EXIT_GATE}, contract.EXIT_GATE),
        ({1: contract.EXIT_GATE}, contract.EXIT_GATE),
        ({0: contract.EXIT_PEER}, contract.EXIT_PEER),
        ({0: contract.EXIT_PEER, 1: contract.EXIT_PEER}, contract.EXIT_PEER),
        # One worker of the pod failed on its own: the pod's fault, whatever its other workers said.
        ({0: contract.EXIT_ERROR, 1: contract.EXIT_PEER}, contract.EXIT_ERROR),
        ({0: -9}, contract.EXIT_ERROR),  # killed by a signal (the OOM killer)
        ({0: 7}, contract.EXIT_ERROR),
    ],
)
def test_the_pods_exit_code_keeps_what_the_job_reads(codes: dict[int, int], pod: int) -> None:
    assert exit_code(codes) == pod


def test_the_exit_codes_the_job_tells_apart_are_distinct() -> None:
    codes = (contract.EXIT_OK, contract.EXIT_ERROR, contract.EXIT_GATE, contract.EXIT_PEER)
    assert len(set(codes)) == len(codes)


def test_without_torchrun_a_process_is_rank_0_of_1() -> None:
    alone = Rank.from_env({})
    assert (alone.rank, alone.world_size, alone.local_rank, alone.distributed, alone.leader) == (0, 1, 0, False, True)


def test_torchruns_variables_give_the_rank() -> None:
    rank = Rank.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (rank.rank, rank.world_size, rank.local_rank, rank.distributed, rank.leader) == (3, 4, 1, True, False)


@pytest.mark.parametrize(
    "env", [{"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "2"}]
)
def test_a_rank_outside_its_world_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"RANK|rank"):
        Rank.from_env(env)


@pytest.mark.parametrize(
    ("nodes", "gpus", "per_node", "max_nodes", "fits"),
    [
        (1, 1, 1, 1, True),
        (2, 1, 1, 2, True),
        (3, 1, 1, 2, False),
        (4, 1, 4, 1, True),  # four one-GPU pods on one four-GPU node
        (5, 1, 4, 1, False),
        (2, 2, 4, 1, True),
        (3, 2, 4, 1, False),
    ],
)
def test_the_pool_holds_every_training_pod_at_once(
    nodes: int, gpus: int, per_node: int, max_nodes: int, fits: bool
) -> None:
    problems = rules.train_nodes(
        nodes=nodes, trainer_gpus=gpus, gpus_per_node=per_node, max_nodes=max_nodes, gpu_model="t4", batch_size=64
    )
    assert (problems == []) == fits, problems
    assert all(p.key == "trainNodes" for p in problems)


def test_every_rank_gets_a_part_of_each_batch() -> None:
    (problem,) = rules.train_nodes(nodes=2, trainer_gpus=2, gpus_per_node=2, max_nodes=2, gpu_model="t4", batch_size=3)
    assert (problem.key, problem.value) == ("trainBatchSize", 3)
    assert "must be at least 4" in problem.reason


def test_the_workloads_refuse_several_training_pods_on_a_store_one_node_mounts() -> None:
    local_store = ModelStore(claim=StorageClaim(access_mode="ReadWriteOnce", storage_class=None))
    args = workloads_args(FakeTarget(gpu=GPU, model_store=local_store), training=replace(TRAINING, nodes=2))
    with pytest.raises(workloads.WorkloadsError, match=r"trainNodes = 2: .*ReadWriteOnce"):
        workloads.check(args)
    workloads.check(replace(args, training=TRAINING))  # one pod: as before


def test_the_workloads_refuse_several_training_pods_without_a_gpu_pool() -> None:
    args = workloads_args(FakeTarget(gpu=None), training=replace(TRAINING, nodes=2))
    with pytest.raises(workloads.WorkloadsError, match="trainNodes = 2: more than one training pod runs on a GPU pool"):
        workloads.check(args)
