"""Mistakes real deploys made, refused at program start before any resource, each naming the key.

Every case runs the whole program for a shipped stack with one key changed (``stack_problems``, which
also asserts that nothing was created). The rules themselves live in mlstack/rules.py and
mlstack/validate.py, each with its source.
"""

from __future__ import annotations

import pytest

from mlstack import prices, rules
from mlstack.clouds import gcp_locations
from tests.support import StackProblems
from tools import harness


def only(problems: list[str], key: str) -> str:
    found = [p for p in problems if p.startswith(f"mlstack:{key}")]
    assert len(found) == 1, f"expected one problem on mlstack:{key}, got {problems}"
    return found[0]


# --- keys that are not the program's ------------------------------------------------------


def test_a_typoed_key_is_refused_with_the_nearest_declared_one(stack_problems: StackProblems) -> None:
    """Finding: `mlstack:gpuMaxNode: 3` ran to completion and left the pool at its default size."""
    problem = only(stack_problems("gke", gpuMaxNode=3), "gpuMaxNode")
    assert problem.startswith("mlstack:gpuMaxNode is not a key of this program (did you mean mlstack:gpuMaxNodes?")


def test_a_key_in_the_wrong_case_is_pointed_at_its_spelling(stack_problems: StackProblems) -> None:
    assert "did you mean mlstack:gpuSpot?" in only(stack_problems("dev", GPUSPOT="true"), "GPUSPOT")


def test_a_made_up_key_is_refused_without_a_guess(stack_problems: StackProblems) -> None:
    problem = only(stack_problems("local", wholeNewIdea="x"), "wholeNewIdea")
    assert "did you mean" not in problem
    assert "declared in Pulumi.yaml" in problem


def test_another_namespace_is_not_ours_to_judge(kubeconfig: object) -> None:
    run = harness.run_stack("local", {"kubernetes:context": "kind-other"})
    assert run.exports["namespace"] == "mlstack"


# --- versions and quantities as YAML and Kubernetes read them -------------------------------


def test_an_unquoted_version_is_shown_as_yaml_read_it_with_a_hint_to_quote(stack_problems: StackProblems) -> None:
    """Finding: `kubernetesVersion: 1.30` reached the program as 1.3, reported with no hint."""
    problem = only(stack_problems("dev", kubernetesVersion="1.3"), "kubernetesVersion")
    assert 'an unquoted 1.30 in YAML is the number 1.3; quote it: "1.30"' in problem
    with pytest.raises(harness.HarnessError, match=r"YAML read it as the number 1\.3.*quote the value"):
        harness.load_stack_config("dev", {"kubernetesVersion": 1.3})


def test_a_version_below_the_minimum_is_named_so_not_as_schema_errors(stack_problems: StackProblems) -> None:
    problem = only(stack_problems("local", kubernetesVersion="1.25"), "kubernetesVersion")
    assert "is older than 1.30, the oldest Kubernetes the stack's objects run on" in problem


@pytest.mark.parametrize("key", ["trainerMemory", "modelStoreSize"])
def test_a_lower_case_m_on_a_size_is_refused(stack_problems: StackProblems, key: str) -> None:
    """512m of memory is 0.512 bytes (kubernetes.io, "Memory resource units")."""
    problem = only(stack_problems("local", **{key: "512m"}), key)
    assert "is 0.512 bytes" in problem
    assert "write 512Mi" in problem


def test_a_servers_memory_request_and_limit_are_sizes_too(stack_problems: StackProblems) -> None:
    problem = only(stack_problems("local", serverMemoryRequest="256m", serverMemoryLimit="1Gi"), "serverMemoryRequest")
    assert "write 256Mi" in problem


# --- names, namespaces, addresses, platforms, storage --------------------------------------


def test_an_app_name_must_start_with_a_letter_for_its_service_names(stack_problems: StackProblems) -> None:
    """A valid DNS-1123 label, but the Services <appName>-server would not be valid RFC 1035 labels."""
    problem = only(stack_problems("local", appName="1st-model"), "appName")
    assert "RFC 1035 label" in problem


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-anything"])
def test_a_system_namespace_is_refused(stack_problems: StackProblems, namespace: str) -> None:
    problem = only(stack_problems("local", namespace=namespace), "namespace")
    assert "Kubernetes system namespace" in problem


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "192.168.1.0/24", "100.64.0.0/10", "fd00::/8"])
def test_private_ranges_are_refused_on_a_public_load_balancer(stack_problems: StackProblems, cidr: str) -> None:
    problem = only(stack_problems("dev", allowedSourceRanges=[cidr]), "allowedSourceRanges")
    assert "public load balancer" in problem


def test_private_ranges_are_fine_where_the_cluster_has_no_public_load_balancer(kubeconfig: object) -> None:
    run = harness.run_stack("local", {"allowedSourceRanges": ["10.0.0.0/8"]})
    assert run.exports["namespace"] == "mlstack"


def test_arm64_images_are_refused_on_a_cloud_gpu_pool(stack_problems: StackProblems) -> None:
    problem = only(stack_problems("gke", imagePlatform="linux/arm64"), "imagePlatform")
    assert "exec format error" in problem


@pytest.mark.parametrize("storage_class", ["managed-csi", "default", "managed-premium"])
def test_an_azure_disk_class_cannot_share_the_model_store(stack_problems: StackProblems, storage_class: str) -> None:
    problem = only(stack_problems("dev", storageClass=storage_class), "storageClass")
    assert "ReadWriteOnce" in problem


def test_a_storage_class_on_gke_is_refused_as_having_no_effect(stack_problems: StackProblems) -> None:
    assert "has no effect on GKE" in only(stack_problems("gke", storageClass="standard-rwo"), "storageClass")


def test_a_deadline_shorter_than_a_gpu_nodes_scale_up_from_zero_is_refused(stack_problems: StackProblems) -> None:
    problem = only(stack_problems("dev", trainDeadlineSeconds=400, trainTimeout="10m"), "trainDeadlineSeconds")
    assert f"plus {rules.GPU_SCALE_UP_SECONDS}s for a GPU node to come up from zero" in problem


# --- where the cloud's machines and GPUs are --------------------------------------------------------


def test_a_region_or_zone_that_does_not_exist_is_refused(stack_problems: StackProblems) -> None:
    """Findings: us-central9 and us-central1-z passed, being shaped like a region and a zone."""
    assert "did you mean us-central1?" in only(stack_problems("gke", gcpRegion="us-central9"), "gcpRegion")
    assert "one of us-central1-a, us-central1-b, us-central1-c, us-central1-f" in only(
        stack_problems("gke", gcpZone="us-central1-z"), "gcpZone"
    )


def test_a_zone_without_the_pools_gpu_is_refused(stack_problems: StackProblems) -> None:
    region, zone = next(
        (region, zone)
        for region, zones in gcp_locations.GCP_ZONES.items()
        for zone in zones
        if "nvidia-tesla-t4" not in (gcp_locations.gcp_zone_gpus(zone) or {"nvidia-tesla-t4"})
    )
    problem = only(stack_problems("gke", gcpRegion=region, gcpZone=zone), "gcpZone")
    assert "does not offer nvidia-tesla-t4 (gkeGpuType)" in problem


def test_an_n1_machine_too_big_for_its_gpus_is_refused(stack_problems: StackProblems) -> None:
    problem = only(
        stack_problems("gke", gkeGpuType="nvidia-tesla-v100", gkeGpuMachineType="n1-standard-16", trainerCuda="12.6"),
        "gkeGpuMachineType",
    )
    assert "may have at most 12" in problem


@pytest.mark.parametrize(
    ("stack", "key", "machine"),
    [("gke", "gkeSystemMachineType", "t2a-standard-4"), ("dev", "aksSystemVmSize", "Standard_D4ps_v5")],
)
def test_an_arm_system_pool_is_refused(stack_problems: StackProblems, stack: str, key: str, machine: str) -> None:
    assert "Arm" in only(stack_problems(stack, **{key: machine}), key)


def test_a_spot_max_price_below_the_market_is_refused(stack_problems: StackProblems) -> None:
    """westeurope's Spot NC4as_T4_v3 is priced in the table: a max well below it would never get a node."""
    market = prices.hourly(prices.AZURE_VM_HOURLY, "westeurope", "Standard_NC4as_T4_v3", spot=True)
    assert market is not None
    problem = only(
        stack_problems("dev", azureLocation="westeurope", aksSpotMaxPrice=str(market / 2)), "aksSpotMaxPrice"
    )
    assert f"is below the Spot price of Standard_NC4as_T4_v3 in westeurope, ${market}/h" in problem


def test_a_spot_max_price_at_the_market_or_minus_one_passes(kubeconfig: object) -> None:
    market = prices.hourly(prices.AZURE_VM_HOURLY, "westeurope", "Standard_NC4as_T4_v3", spot=True)
    run = harness.run_stack("dev", {"azureLocation": "westeurope", "aksSpotMaxPrice": str(market)})
    assert run.exports["namespace"] == "mlstack"
