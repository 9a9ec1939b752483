"""Where GPU servers must fit: a target with a GPU pool, and a pool that holds the ceiling, a surge and a retrain."""

from __future__ import annotations

from dataclasses import replace

from mlstack import rules
from mlstack.clouds import gcp
from mlstack.problems import Problem
from tests.args import SERVING, TRAINING


def pool(**changes: int) -> list[Problem]:
    shape = {"max_replicas": 3, "gpus_per_node": 1, "max_nodes": 5, "train_nodes": 1, "trainer_gpus": 1} | changes
    return rules.server_gpu_pool(gpu_model="nvidia-tesla-t4", **shape)


def test_a_local_cluster_cannot_serve_on_a_gpu() -> None:
    (problem,) = rules.server_gpu_target(True, gpu_pool=False)
    assert problem.key == "serverGpu"
    assert "no GPU pool" in problem.reason
    assert rules.server_gpu_target(True, gpu_pool=True) == []
    assert rules.server_gpu_target(False, gpu_pool=False) == []


def test_the_pool_holds_the_ceiling_the_surge_and_a_retrain_beside_them() -> None:
    # Three servers and a surge on four nodes, the fifth training: exactly enough.
    assert pool() == []
    (problem,) = pool(max_nodes=4)
    assert problem.key == "gpuMaxNodes"
    assert "hold 3 serving pod(s)" in problem.reason
    assert "maxReplicas (3) plus one rollout surge need 4" in problem.reason


def test_servers_share_a_training_node_s_spare_gpus() -> None:
    # Four GPUs a node, training takes one: three servers beside it, one more node for the fourth.
    assert pool(gpus_per_node=4, max_nodes=2) == []
    assert pool(gpus_per_node=4, max_nodes=1, max_replicas=2) == []
    assert pool(gpus_per_node=4, max_nodes=1, max_replicas=3) != []


def test_a_multi_node_job_leaves_the_servers_only_what_its_nodes_do_not_use() -> None:
    assert pool(train_nodes=2, max_nodes=5) != []
    assert pool(train_nodes=2, max_nodes=6) == []


def test_gpu_servers_leave_the_system_pool_to_the_publish_pod() -> None:
    # n1-standard-4 GPU nodes at most two: the servers' requests must fit there, not on the system pool.
    gpu_serving = replace(SERVING, gpu=True, max_replicas=1)
    problems, _ = rules.node_capacity(
        gcp.GKE_NODES,
        "e2-standard-2",
        "n1-standard-4",
        system_nodes=1,
        serving=gpu_serving,
        training=TRAINING,
        gpu_nodes=2,
    )
    assert problems == [], problems
    cpu_serving = replace(SERVING, replicas=4, cpu_request="500m")
    problems, _ = rules.node_capacity(
        gcp.GKE_NODES,
        "e2-standard-2",
        "n1-standard-4",
        system_nodes=1,
        serving=cpu_serving,
        training=TRAINING,
        gpu_nodes=2,
    )
    assert [p.key for p in problems] == ["gkeSystemMachineType"], "on the CPU the same servers crowd the system pool"
    big = replace(SERVING, gpu=True, max_replicas=1, cpu_request="3900m", cpu_limit="4")
    problems, _ = rules.node_capacity(
        gcp.GKE_NODES, "e2-standard-4", "n1-standard-4", system_nodes=1, serving=big, training=TRAINING, gpu_nodes=2
    )
    (gpu_pool,) = [p for p in problems if p.key == "gkeGpuMachineType"]
    assert "GPU serving pod" in gpu_pool.reason
