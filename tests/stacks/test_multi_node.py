"""trainNodes > 1 on the cloud stacks, under mocks: the Indexed Job, its headless Service, the rank and
rendezvous each pod learns from its environment (under the contract's names and torchrun's), GPU
scheduling for every pod, failure semantics, the network, the config's refusals; and trainNodes = 1
leaves the stacks as they were.

The same Job's pods are run for real in tests/stacks/test_distributed_training.py.
"""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import pytest
from torch.distributed import run as torchrun

from components import workloads
from mlapp import contract
from mlstack.clouds import CLOUDS
from tests import pods
from tests.stacks.test_policy import EXPECTED_ADVICE, findings
from tests.support import (
    JOB,
    NETWORK_POLICY,
    PUBLISH,
    SERVICE,
    STACK_CLOUDS,
    TRAIN,
    SharedRun,
    StackProblems,
    container,
    pod_spec,
    tolerates_gpu_taint,
)
from tools import harness

# Two pods on the cloud stacks; the pool must be able to hold both at once.
MULTI = {"trainNodes": 2, "gpuMaxNodes": 2}
CLOUD_STACKS = ("dev", "gke")


def multi(shared_run: SharedRun, stack: str) -> harness.StackRun:
    return shared_run(stack, MULTI)


def ranks_service(result: harness.StackRun) -> dict[str, Any]:
    return harness.manifest(result.one(SERVICE, "-trainers"))


def downward(job: str, index: int) -> dict[str, str]:
    """What the downward API answers a pod of the Indexed Job ``job`` at completion index ``index``."""
    return {
        f"metadata.labels['{workloads.JOB_NAME_LABEL}']": job,
        f"metadata.annotations['{workloads.JOB_COMPLETION_INDEX_ANNOTATION}']": str(index),
    }


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_every_object_of_a_multi_node_stack_passes_the_strict_schema(shared_run: SharedRun, stack: str) -> None:
    result = multi(shared_run, stack)
    version = result.kubernetes_version
    assert version == CLOUDS[STACK_CLOUDS[stack]].default_minor, f"{stack}: validated against {version}"
    objects = list(harness.kubernetes_manifests(result))
    problems = [p for _, obj in objects for p in harness.validate_manifest(obj, version)]
    assert problems == [], f"{stack} against Kubernetes {version}:\n" + "\n".join(problems)
    kinds = {(obj["kind"], obj["metadata"].get("name")) for _, obj in objects}
    assert ("Service", "mlstack-trainers") in kinds, "the headless Service was not validated"


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_the_job_is_indexed_with_one_pod_per_node_all_at_once(shared_run: SharedRun, stack: str) -> None:
    spec = harness.manifest(multi(shared_run, stack).one(JOB, TRAIN))["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    # The retries keep their meaning: one fault costs one, whatever the group's size.
    assert spec["backoffLimit"] == 2


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_a_headless_service_names_every_training_pod(shared_run: SharedRun, stack: str) -> None:
    result = multi(shared_run, stack)
    service = ranks_service(result)
    job = harness.manifest(result.one(JOB, TRAIN))
    assert service["spec"]["clusterIP"] == "None", "not headless: DNS would answer a virtual IP, not each pod"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["metadata"]["namespace"] == job["metadata"]["namespace"]
    template = job["spec"]["template"]
    assert template["spec"]["subdomain"] == service["metadata"]["name"]
    labels = template["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), (service, labels)
    port = service["spec"]["ports"][0]
    declared = {p["name"]: p["containerPort"] for p in container(result.one(JOB, TRAIN))["ports"]}
    assert declared[port["targetPort"]] == port["port"] == contract.RENDEZVOUS_PORT
    # The Job starts once its pods' names can resolve.
    assert result.one(SERVICE, "-trainers").urn in result.one(JOB, TRAIN).dependencies


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_each_pod_is_a_torchrun_node_ranked_by_its_index_meeting_at_index_0(shared_run: SharedRun, stack: str) -> None:
    result = multi(shared_run, stack)
    trainer = container(result.one(JOB, TRAIN))
    assert "command" not in trainer, "the image's own ENTRYPOINT: the platform starts no launcher"
    assert "args" not in trainer
    service = ranks_service(result)["metadata"]["name"]
    gpus = int(trainer["resources"]["limits"]["nvidia.com/gpu"])
    # Pod 1 of the Job the controller named mlstack-train-x1y2, as its kubelet would set its environment.
    env = pods.pod_env(result, trainer, downward("mlstack-train-x1y2", 1))
    ours = {name: env[name] for name in contract.TORCHRUN_ENV}
    assert ours == {
        contract.ENV_NUM_NODES: "2",
        contract.ENV_GPUS_PER_NODE: str(gpus),
        contract.ENV_NODE_RANK: "1",
        contract.ENV_MASTER_ADDR: f"mlstack-train-x1y2-0.{service}",
        contract.ENV_MASTER_PORT: str(contract.RENDEZVOUS_PORT),
    }
    assert env[contract.ENV_JOB_NAME] == "mlstack-train-x1y2"
    # torchrun's own variables say the same: `torchrun train.py` needs no flag.
    assert {torchruns: env[torchruns] for torchruns in contract.TORCHRUN_ENV.values()} == {
        contract.TORCHRUN_ENV[name]: value for name, value in ours.items()
    }
    assert env[contract.TORCHRUN_MAX_RESTARTS[0]] == contract.TORCHRUN_MAX_RESTARTS[1]
    # torchrun's own parser reads its options from them (PET_<OPTION>) when no flag is given: static
    # rendezvous on index 0's pod, this pod's rank its completion index, no restart in place.
    os_env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    with mock.patch.dict(os.environ, {**os_env, **env}, clear=True):
        parsed = torchrun.parse_args(["-m", "digits.train"])
    assert (parsed.nnodes, parsed.nproc_per_node) == ("2", str(gpus))
    assert parsed.rdzv_backend == "static"
    assert parsed.max_restarts == 0
    assert parsed.node_rank == 1
    assert parsed.master_addr == f"mlstack-train-x1y2-0.{service}"
    assert parsed.master_port == contract.RENDEZVOUS_PORT
    # The rest is a single pod's, the device its GPUs.
    assert env[contract.ENV_MODEL_VERSION] == result.exports["modelVersion"]
    assert env[contract.ENV_DEVICE] == "cuda"
    assert int(env[contract.ENV_BATCH_SIZE]) >= 2 * gpus, "a rank would get no example of a batch"


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_every_pod_requests_its_gpus_on_the_gpu_pool(shared_run: SharedRun, stack: str) -> None:
    job = multi(shared_run, stack).one(JOB, TRAIN)
    spec = pod_spec(job)
    # One template for every index: each of the pods asks for trainerGpus and lands on the pool.
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"], "the training pods would not select the GPU pool"
    assert tolerates_gpu_taint(spec["tolerations"])


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_a_rank_stopped_for_another_does_not_count_and_the_gate_still_fails_at_once(
    shared_run: SharedRun, stack: str
) -> None:
    rules = harness.manifest(multi(shared_run, stack).one(JOB, TRAIN))["spec"]["podFailurePolicy"]["rules"]

    def codes(action: str) -> list[int]:
        return [v for r in rules if r["action"] == action and "onExitCodes" in r for v in r["onExitCodes"]["values"]]

    assert codes("FailJob") == [contract.EXIT_GATE]
    assert codes("Ignore") == [contract.EXIT_PEER]
    evictions = [r for r in rules if r["action"] == "Ignore" and "onPodConditions" in r]
    assert evictions[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    # The first matching rule decides: the gate's rule comes before any Ignore.
    assert rules[0]["action"] == "FailJob"
    assert all(r["onExitCodes"]["containerName"] == contract.TRAINER_CONTAINER for r in rules if "onExitCodes" in r)


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_training_pods_reach_each_other_and_nothing_else_new(shared_run: SharedRun, stack: str) -> None:
    result = multi(shared_run, stack)
    policy = harness.manifest(result.one(NETWORK_POLICY, "-trainer-network"))["spec"]
    labels = harness.manifest(result.one(JOB, TRAIN))["spec"]["template"]["metadata"]["labels"]
    selected = policy["podSelector"]["matchLabels"]
    assert all(labels[k] == v for k, v in selected.items())
    single = harness.manifest(shared_run(stack).one(NETWORK_POLICY, "-trainer-network"))["spec"]
    # A single training pod takes connections on its metrics port from the collector alone.
    assert [r["ports"] for r in single["ingress"]] == [[{"port": contract.METRICS_PORT_NAME, "protocol": "TCP"}]]
    (ingress,) = [r for r in policy["ingress"] if r not in single["ingress"]]
    assert ingress["from"] == [{"podSelector": {"matchLabels": selected}}]
    assert "ports" not in ingress, "gloo and NCCL connect on ephemeral ports"
    assert {"to": [{"podSelector": {"matchLabels": selected}}]} in policy["egress"]
    assert [r for r in policy["egress"] if r not in single["egress"]] == [
        {"to": [{"podSelector": {"matchLabels": selected}}]}
    ]


@pytest.mark.parametrize("stack", ["local", *CLOUD_STACKS])
def test_one_node_is_the_job_it_always_was(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    spec = harness.manifest(result.one(JOB, TRAIN))["spec"]
    assert not {"completionMode", "completions", "parallelism"} & spec.keys()
    assert "subdomain" not in spec["template"]["spec"]
    trainer = container(result.one(JOB, TRAIN))
    assert "command" not in trainer, "the image's entrypoint, the trainer, runs alone"
    assert [p["name"] for p in trainer["ports"]] == [contract.METRICS_PORT_NAME], "no rendezvous port"
    names = {e["name"] for e in trainer["env"]}
    assert not names & {contract.ENV_JOB_NAME, *contract.TORCHRUN_ENV, *contract.TORCHRUN_ENV.values()}
    assert all("valueFrom" not in e for e in trainer["env"]), "a single pod needs nothing of the downward API"
    assert [r for r in result.of_type(SERVICE) if r.name.endswith("-trainers")] == []
    assert [r["action"] for r in spec["podFailurePolicy"]["rules"]] == ["FailJob", "Ignore"]


def test_a_gpu_pool_too_small_for_every_pod_is_refused_naming_both_keys(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("gke", trainNodes=3, gpuMaxNodes=2)
    assert problem.startswith("mlstack:trainNodes = 3: 3 training pods of mlstack:trainerGpus 1 must run at once")
    assert "mlstack:gpuMaxNodes is 2; raise mlstack:gpuMaxNodes to 3 or lower trainNodes to 2" in problem


def test_pods_per_node_count_where_a_node_carries_several_gpus(stack_problems: StackProblems) -> None:
    # Standard_NC64as_T4_v3 carries 4 T4s: 5 pods of one GPU need 2 nodes.
    problems = stack_problems("dev", aksGpuVmSize="Standard_NC64as_T4_v3", trainNodes=5, gpuMaxNodes=1)
    assert any(p.startswith("mlstack:trainNodes = 5:") and "4 pod(s) per node" in p for p in problems), problems


@pytest.mark.parametrize(
    ("overrides", "key", "reason"),
    [
        ({"trainNodes": 0}, "trainNodes", "must be between 1 and 100"),
        ({"trainNodes": 2}, "trainNodes", "a local cluster trains in one pod"),
    ],
)
def test_train_nodes_a_local_stack_cannot_run_is_refused(
    stack_problems: StackProblems, overrides: dict[str, Any], key: str, reason: str
) -> None:
    problems = stack_problems("local", **overrides)
    assert any(p.startswith(f"mlstack:{key} = ") and reason in p for p in problems), problems


def test_a_batch_smaller_than_the_ranks_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("gke", trainNodes=2, gpuMaxNodes=2, trainBatchSize=1)
    assert problem.startswith("mlstack:trainBatchSize = 1: each batch is shared by the 2 ranks")


def test_the_gpu_nodes_must_hold_every_training_pods_cpu_and_memory(stack_problems: StackProblems) -> None:
    # n1-standard-4 holds one trainer of 3 CPUs, so two pods need two nodes, not one.
    problems = stack_problems("gke", trainNodes=2, gpuMaxNodes=1, gkeGpuCount=2, trainerCpu="3")
    assert any(p.startswith("mlstack:gkeGpuMachineType = 'n1-standard-4': too small") for p in problems), problems


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_a_multi_node_stack_passes_the_policy_pack(shared_run: SharedRun, stack: str) -> None:
    found = findings(multi(shared_run, stack))
    assert [f"{name}: {message}" for level, _, name, message in found if level == "mandatory"] == []
    assert {(rule, name) for level, rule, name, _ in found if level == "advisory"} == EXPECTED_ADVICE[stack]


def test_several_gpus_per_pod_share_memory_for_nccl_and_one_does_not(shared_run: SharedRun) -> None:
    result = shared_run("gke", {**MULTI, "trainerGpus": 2, "gkeGpuCount": 2})
    job = result.one(JOB, TRAIN)
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    assert volumes[mounts[workloads.SHM_DIR]]["emptyDir"] == {"medium": "Memory", "sizeLimit": workloads.SHM_SIZE}
    objects = list(harness.kubernetes_manifests(result))
    assert [p for _, obj in objects for p in harness.validate_manifest(obj, "1.33")] == []
    assert workloads.SHM_DIR not in {
        m["mountPath"] for m in container(multi(shared_run, "gke").one(JOB, TRAIN))["volumeMounts"]
    }


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_the_publish_step_is_one_pod_whatever_the_groups_size(shared_run: SharedRun, stack: str) -> None:
    """Rank 0 alone writes the outputs: one publisher reads them, off the GPU pool."""
    result = multi(shared_run, stack)
    spec = harness.manifest(result.one(JOB, PUBLISH))["spec"]
    assert not {"completionMode", "completions", "parallelism"} & spec.keys()
    assert "nodeSelector" not in spec["template"]["spec"]
    assert result.one(JOB, TRAIN).urn in result.one(JOB, PUBLISH).dependencies
