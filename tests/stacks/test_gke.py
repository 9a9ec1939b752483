"""The shipped GKE stack: the cluster, its pools and identities, and the workloads on it.

GkeGpuCluster alone: tests/components/test_gke.py; its builders: tests/pure/test_gke.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components import gke
from components.target import GPU_POOL, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL_KEY
from mlapp import contract
from tests.support import (
    DEPLOYMENT,
    JOB,
    K8S_PROVIDER,
    SERVICE_ACCOUNT,
    TRAIN,
    SharedRun,
    container,
    pod_spec,
    pod_template_annotations,
    tolerates_gpu_taint,
)
from tools import harness, mocks_gcp

NODE_POOL = "gcp:container/nodePool:NodePool"
CLUSTER = "gcp:container/cluster:Cluster"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
REPOSITORY_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"


@pytest.fixture
def stack(shipped: dict[str, harness.StackRun]) -> harness.StackRun:
    """The shipped GKE stack (Pulumi.gke.yaml): one Spot T4 per node, from zero to one node."""
    return shipped["gke"]


def model_volume(registration: harness.Registration) -> dict[str, Any]:
    volumes = {v["name"]: v for v in pod_spec(registration)["volumes"]}
    volume: dict[str, Any] = volumes["models"]
    return volume


# --- node pools ----------------------------------------------------------------


def test_gpu_pool_accelerator_driver_taint_autoscaling_and_spot(stack: harness.StackRun) -> None:
    pool = stack.one(NODE_POOL, "-gpu")
    node = pool.inputs["nodeConfig"]
    assert node["machineType"] == "n1-standard-4", pool.urn
    assert harness.plain(node["guestAccelerators"]) == [
        {
            "type": "nvidia-tesla-t4",
            "count": 1,
            "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"},
        }
    ], pool.urn
    assert node["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}], pool.urn
    assert node["spot"] is True, pool.urn
    assert harness.plain(pool.inputs["autoscaling"]) == {
        "totalMinNodeCount": 0,
        "totalMaxNodeCount": 1,
    }, pool.urn
    # The autoscaler owns the size: a fixed node count would fight it.
    assert "nodeCount" not in pool.inputs, pool.urn
    assert "initialNodeCount" not in pool.inputs, pool.urn
    # One key on every cloud (GKE's pools carried mlstack.dev/pool until the layers refactor).
    assert node["labels"] == {POOL_LABEL_KEY: GPU_POOL} == {"mlstack.io/pool": "gpu"}, pool.urn
    assert node["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}, pool.urn
    assert node["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"], pool.urn


def test_gpu_pool_follows_config_without_spot(shared_run: SharedRun) -> None:
    result = shared_run(
        "gke",
        overrides={
            "gpuSpot": False,
            "gpuMinNodes": 1,
            "gpuMaxNodes": 3,
            "gkeGpuMachineType": "g2-standard-24",
            "gkeGpuType": "nvidia-l4",
            "gkeGpuCount": 2,
            "gkeGpuDriverVersion": "LATEST",
            "trainerGpus": 2,
        },
    )
    pool = result.one(NODE_POOL, "-gpu")
    node = harness.plain(pool.inputs["nodeConfig"])
    assert not node.get("spot"), pool.urn
    assert node["machineType"] == "g2-standard-24", pool.urn
    assert node["guestAccelerators"] == [
        {
            "type": "nvidia-l4",
            "count": 2,
            "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"},
        }
    ], pool.urn
    assert harness.plain(pool.inputs["autoscaling"]) == {
        "totalMinNodeCount": 1,
        "totalMaxNodeCount": 3,
    }, pool.urn
    job = result.one(JOB, TRAIN)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2", job.urn
    assert pod_spec(job)["nodeSelector"][gke.ACCELERATOR_LABEL] == "nvidia-l4", job.urn


def test_system_pool_is_fixed_size_without_gpu(stack: harness.StackRun) -> None:
    pool = stack.one(NODE_POOL, "-system")
    node = pool.inputs["nodeConfig"]
    assert pool.inputs["nodeCount"] == 1, pool.urn
    assert node["machineType"] == "e2-standard-4", pool.urn
    assert not node.get("guestAccelerators"), pool.urn
    assert not node.get("taints"), pool.urn
    assert node["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}, pool.urn


# --- the cluster -----------------------------------------------------------------


def test_cluster_removes_default_pool_and_enables_workload_identity_and_gcs_fuse(
    stack: harness.StackRun,
) -> None:
    cluster = stack.one(CLUSTER)
    inputs = harness.plain(cluster.inputs)
    assert inputs["removeDefaultNodePool"] is True, cluster.urn
    assert inputs["initialNodeCount"] == 1, cluster.urn
    assert inputs["workloadIdentityConfig"] == {"workloadPool": "my-ml-project.svc.id.goog"}, cluster.urn
    assert inputs["addonsConfig"] == {"gcsFuseCsiDriverConfig": {"enabled": True}}, cluster.urn
    assert inputs["releaseChannel"] == {"channel": "REGULAR"}, cluster.urn
    # No pinned version: the channel's default (tests/stacks/test_kubernetes_versions.py).
    assert "minMasterVersion" not in inputs, cluster.urn
    assert inputs["deletionProtection"] is False, cluster.urn
    assert inputs["location"] == "us-central1-a", cluster.urn
    for pool in stack.of_type(NODE_POOL):
        assert pool.inputs["cluster"] == cluster.outputs["name"], pool.urn
        assert pool.inputs["location"] == "us-central1-a", pool.urn


def test_the_cluster_enforces_network_policies_with_dataplane_v2(stack: harness.StackRun) -> None:
    """Finding: no network-policy engine, so the workloads' NetworkPolicies would be stored and ignored."""
    inputs = harness.plain(stack.one(CLUSTER).inputs)
    assert inputs["datapathProvider"] == "ADVANCED_DATAPATH"
    # Calico's policy add-on may not be turned on beside Dataplane V2 (the API refuses it).
    assert "networkPolicy" not in inputs
    assert "networkPolicyConfig" not in inputs["addonsConfig"]


def test_regional_cluster_with_deletion_protection(shared_run: SharedRun) -> None:
    result = shared_run("gke", overrides={"gcpZone": "", "gkeDeletionProtection": True})
    cluster = result.one(CLUSTER)
    assert cluster.inputs["location"] == "us-central1", cluster.urn
    assert cluster.inputs["deletionProtection"] is True, cluster.urn
    assert result.exports["location"] == "us-central1"


# --- identities -------------------------------------------------------------------


def test_node_service_account_runs_both_pools_with_only_node_roles(stack: harness.StackRun) -> None:
    account = stack.one(ACCOUNT, "-nodes")
    email = account.outputs["email"]
    member = f"serviceAccount:{email}"
    for pool in stack.of_type(NODE_POOL):
        assert pool.inputs["nodeConfig"]["serviceAccount"] == email, pool.urn
    grants = [g for g in stack.of_type(PROJECT_MEMBER) if "-nodes-" in g.name]
    assert {g.inputs["role"] for g in grants} == set(gke.NODE_PROJECT_ROLES), [g.urn for g in grants]
    for grant in grants:
        assert grant.inputs["member"] == member, grant.urn
        assert grant.inputs["project"] == "my-ml-project", grant.urn

    repository = stack.one(REPOSITORY)
    reader = stack.one(REPOSITORY_MEMBER)
    assert reader.inputs["role"] == "roles/artifactregistry.reader", reader.urn
    assert reader.inputs["member"] == member, reader.urn
    assert reader.inputs["repository"] == repository.inputs["repositoryId"], reader.urn
    assert reader.inputs["location"] == repository.inputs["location"] == "us-central1", reader.urn
    assert repository.inputs["format"] == "DOCKER", repository.urn
    # The grant waits for the repository and the account it names.
    assert {repository.urn, account.urn} <= set(reader.dependencies), reader.dependencies


PRINCIPAL_PREFIX = (
    f"principal://iam.googleapis.com/projects/{mocks_gcp.MOCK_PROJECT_NUMBER}/locations/global/"
    "workloadIdentityPools/my-ml-project.svc.id.goog/subject/ns/mlstack/sa/"
)


def bucket_grants(stack: harness.StackRun) -> dict[str, harness.Registration]:
    """The model bucket's grants by the Kubernetes service account each names."""
    return {grant.inputs["member"].rsplit("/sa/", 1)[1]: grant for grant in stack.of_type(BUCKET_MEMBER)}


def test_model_bucket_is_private_and_granted_only_to_the_two_workload_principals(
    stack: harness.StackRun,
) -> None:
    """Finding: one identity served both, so the internet-facing server could write (poison) models."""
    bucket = stack.one(BUCKET)
    assert bucket.inputs["uniformBucketLevelAccess"] is True, bucket.urn
    assert bucket.inputs["publicAccessPrevention"] == "enforced", bucket.urn
    assert bucket.inputs["forceDestroy"] is False, bucket.urn

    grants = bucket_grants(stack)
    roles = {account: grant.inputs["role"] for account, grant in grants.items()}
    assert roles == {"mlstack-trainer": "roles/storage.objectUser", "mlstack-server": "roles/storage.objectViewer"}
    for account, grant in grants.items():
        assert grant.inputs["bucket"] == bucket.outputs["name"], grant.urn
        assert bucket.urn in grant.dependencies, grant.dependencies
        assert grant.inputs["member"] == PRINCIPAL_PREFIX + account, grant.urn


def test_bucket_grants_wait_for_the_workload_identity_cluster(stack: harness.StackRun) -> None:
    """Bug: a grant could run before the pool PROJECT.svc.id.goog existed ("Identity Pool does not exist")."""
    cluster = stack.one(CLUSTER)
    for grant in stack.of_type(BUCKET_MEMBER):
        assert cluster.inputs["workloadIdentityConfig"]["workloadPool"] in grant.inputs["member"], grant.urn
        assert cluster.urn in grant.dependencies, grant.dependencies


def test_the_trainer_writes_and_the_servers_only_read_through_their_own_identity(shared_run: SharedRun) -> None:
    result = shared_run("gke", overrides={"namespace": "ml-team", "appName": "digits"})
    grants = {grant.inputs["member"]: grant.inputs["role"] for grant in result.of_type(BUCKET_MEMBER)}
    bucket_name = result.one(BUCKET).outputs["name"]
    accounts = {harness.manifest(a)["metadata"]["name"]: harness.manifest(a) for a in result.of_type(SERVICE_ACCOUNT)}
    assert set(accounts) == {"digits-trainer", "digits-server"}

    expected = (
        (result.one(JOB, TRAIN), False, "roles/storage.objectUser"),
        (result.one(DEPLOYMENT), True, "roles/storage.objectViewer"),
    )
    for registration, read_only, role in expected:
        spec = pod_spec(registration)
        meta = accounts[spec["serviceAccountName"]]["metadata"]
        member = next(m for m in grants if m.endswith(f"/subject/ns/{meta['namespace']}/sa/{meta['name']}"))
        assert meta["namespace"] == "ml-team", registration.urn
        assert grants[member] == role, registration.urn
        # The GCS FUSE driver gets the pod's token from the kubelet, not from the pod.
        assert spec["automountServiceAccountToken"] is False, registration.urn
        assert pod_template_annotations(registration)["gke-gcsfuse/volumes"] == "true", registration.urn
        csi = model_volume(registration)["csi"]
        assert csi["driver"] == "gcsfuse.csi.storage.gke.io", registration.urn
        assert csi["volumeAttributes"]["bucketName"] == bucket_name, registration.urn
        options = csi["volumeAttributes"]["mountOptions"].split(",")
        assert {f"uid={contract.APP_UID}", f"gid={contract.APP_UID}"} <= set(options), registration.urn
        assert csi.get("readOnly", False) is read_only, registration.urn
        assert spec["securityContext"]["runAsUser"] == contract.APP_UID, registration.urn


# --- Kubernetes access -------------------------------------------------------------


def test_every_kubernetes_object_uses_the_provider_built_from_this_cluster(
    stack: harness.StackRun,
) -> None:
    provider = stack.one(K8S_PROVIDER)
    component = stack.one("mlstack:gke:GkeGpuCluster")
    assert provider.parent == component.urn, provider.urn
    objects = stack.kubernetes_objects()
    assert objects
    for registration in objects:
        assert registration.provider_urn == provider.urn, registration.urn
    # Nothing is applied before there are nodes and the workloads may read the bucket.
    needed = {
        stack.one(NODE_POOL, "-gpu").urn,
        stack.one(NODE_POOL, "-system").urn,
        *(grant.urn for grant in stack.of_type(BUCKET_MEMBER)),
    }
    assert needed <= set(provider.dependencies), provider.dependencies


def test_kubeconfig_export_is_secret_and_uses_the_gke_auth_plugin(stack: harness.StackRun) -> None:
    assert "kubeconfig" in stack.secret_exports
    config = yaml.safe_load(stack.exports["kubeconfig"])
    assert config["clusters"][0]["cluster"] == {
        "server": f"https://{mocks_gcp.MOCK_CLUSTER_ENDPOINT}",
        "certificate-authority-data": mocks_gcp.MOCK_CLUSTER_CA,
    }
    assert config["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    provider = stack.one(K8S_PROVIDER)
    assert harness.is_secret_value(provider.inputs["kubeconfig"]), provider.urn


def test_training_job_selects_the_gpu_pool_tolerates_its_taint_and_requests_gpus(
    stack: harness.StackRun,
) -> None:
    job = stack.one(JOB, TRAIN)
    pool = harness.plain(stack.one(NODE_POOL, "-gpu").inputs["nodeConfig"])
    spec = pod_spec(job)
    # Every label the Job selects on is one the GPU nodes carry.
    node_labels = {**pool["labels"], gke.ACCELERATOR_LABEL: pool["guestAccelerators"][0]["type"]}
    assert spec["nodeSelector"], job.urn
    assert spec["nodeSelector"].items() <= node_labels.items(), job.urn
    # The pool's one taint is the GPU taint, and the Job tolerates it by the policy pack's own rule.
    assert [(t["key"], t["value"]) for t in pool["taints"]] == [(GPU_TAINT_KEY, GPU_TAINT_VALUE)], pool["taints"]
    assert tolerates_gpu_taint(spec["tolerations"]), (job.urn, spec["tolerations"])
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1", job.urn


def test_trainer_finds_the_driver_gke_mounts_at_usr_local_nvidia(stack: harness.StackRun) -> None:
    """Bug: GKE mounts the driver at /usr/local/nvidia without a loader path; torch saw no libcuda."""
    trainer = container(stack.one(JOB, TRAIN))
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64", trainer["env"]
    assert env[contract.ENV_DEVICE] == "cuda"
    server = container(stack.one(DEPLOYMENT))
    assert "LD_LIBRARY_PATH" not in {e["name"] for e in server["env"]}, "the server has no CUDA"


def test_gke_exports(stack: harness.StackRun) -> None:
    cluster_name = stack.one(CLUSTER).outputs["name"]
    bucket = stack.one(BUCKET)
    assert stack.exports["clusterName"] == cluster_name
    assert stack.exports["location"] == "us-central1-a"
    assert stack.exports["registryUrl"] == "us-central1-docker.pkg.dev/my-ml-project/mlstack"
    assert stack.exports["modelBucket"] == bucket.outputs["name"] == bucket.inputs["name"]
    assert stack.exports["getCredentials"] == (
        f"gcloud container clusters get-credentials {cluster_name} --location us-central1-a --project my-ml-project"
    )
