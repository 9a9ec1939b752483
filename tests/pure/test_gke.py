"""The GKE target's pure builders and argument check, called without mocks.

The component under mocks: tests/components/test_gke.py; the shipped GKE stack: tests/stacks/test_gke.py.
"""

from __future__ import annotations

import dataclasses

import yaml

from components import gke
from components.target import GPU_POOL, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL_KEY, SYSTEM_POOL
from mlapp import contract
from mlstack.problems import format_problem
from tests.args import gke_args
from tests.support import tolerates_gpu_taint

# --- the argument check ---------------------------------------------------------------


def test_sound_arguments_pass() -> None:
    assert gke.check_args(gke_args()) == []
    assert gke.check_args(gke_args(location="us-central1")) == [], "a regional cluster"


def test_every_bad_argument_is_named_by_its_config_key() -> None:
    found = gke.check_args(
        gke_args(gpu_count=3, gpu_driver_version="R535", gpu_min_nodes=2, release_channel="BETA", location="eu-x1-a")
    )
    messages = [format_problem(p) for p in found]
    assert [p.key for p in found] == [
        "gkeReleaseChannel",
        "gkeGpuDriverVersion",
        "gkeGpuCount",
        "gpuMaxNodes",
        "gcpZone",
    ]
    assert "mlstack:gkeReleaseChannel = 'BETA': must be one of RAPID, REGULAR, STABLE, EXTENDED" in messages
    assert "mlstack:gkeGpuDriverVersion = 'R535': must be one of DEFAULT, LATEST, INSTALLATION_DISABLED" in messages
    assert "mlstack:gkeGpuCount = 3: nvidia-tesla-t4 attaches to an N1 machine in counts of 1, 2, 4" in messages
    assert "mlstack:gpuMaxNodes = 1: must be at least mlstack:gpuMinNodes (2)" in messages
    assert any(
        m.startswith("mlstack:gcpZone = 'eu-x1-a': must be a zone of mlstack:gcpRegion (us-central1)") for m in messages
    )


def test_the_app_name_must_make_an_artifact_registry_repository_id() -> None:
    (problem,) = gke.check_args(gke_args(repository_id="1mlstack"))
    assert format_problem(problem).startswith("mlstack:appName = '1mlstack': names the Artifact Registry repository")


# --- scheduling and node pools ----------------------------------------------------------


def test_gpu_pods_select_the_pools_label_and_accelerator_and_tolerate_its_taint() -> None:
    scheduling = gke.gpu_scheduling("nvidia-l4", 2, 3)
    assert scheduling.node_selector == {POOL_LABEL_KEY: GPU_POOL, gke.ACCELERATOR_LABEL: "nvidia-l4"}
    assert tolerates_gpu_taint([dataclasses.asdict(t) for t in scheduling.tolerations])
    assert (scheduling.gpus_per_node, scheduling.gpu_model) == (2, "nvidia-l4")


def test_gpu_containers_find_the_driver_gke_mounts_at_usr_local_nvidia() -> None:
    """Bug: GKE mounts the driver at /usr/local/nvidia without a loader path; torch saw no libcuda."""
    assert gke.gpu_scheduling("nvidia-tesla-t4", 1, 1).container_env == {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"}


def test_every_pool_runs_as_the_node_account_with_the_gke_metadata_server_and_its_label() -> None:
    node = gke.node_config("e2-standard-4", SYSTEM_POOL, "nodes@example.iam.gserviceaccount.com")
    assert node.service_account == "nodes@example.iam.gserviceaccount.com"
    assert node.labels == {POOL_LABEL_KEY: SYSTEM_POOL}
    assert node.workload_metadata_config.mode == "GKE_METADATA", "pods would get the node's identity"
    assert node.oauth_scopes == [gke.CLOUD_PLATFORM_SCOPE]
    assert node.guest_accelerators is None
    assert node.taints is None


def test_gpu_nodes_carry_the_accelerators_the_driver_spot_and_the_gpu_taint() -> None:
    node = gke.gpu_node_config(gke_args(gpu_type="nvidia-l4", gpu_machine_type="g2-standard-24", gpu_count=2), "sa")
    assert node.machine_type == "g2-standard-24"
    assert node.labels == {POOL_LABEL_KEY: GPU_POOL}
    (accelerator,) = node.guest_accelerators
    assert (accelerator.type, accelerator.count) == ("nvidia-l4", 2)
    assert accelerator.gpu_driver_installation_config.gpu_driver_version == "DEFAULT"
    assert node.spot is True
    (taint,) = node.taints
    assert (taint.key, taint.value, taint.effect) == (GPU_TAINT_KEY, GPU_TAINT_VALUE, "NO_SCHEDULE")


# --- the model store and identities -------------------------------------------------------


def test_the_model_store_is_the_bucket_through_the_gcs_fuse_driver_as_the_apps_user() -> None:
    store = gke.gcs_model_store("models-bucket")
    assert store.claim is None
    assert store.csi is not None
    assert store.csi.driver == gke.GCS_FUSE_DRIVER
    assert store.csi.volume_attributes["bucketName"] == "models-bucket"
    options = str(store.csi.volume_attributes["mountOptions"]).split(",")
    assert {"implicit-dirs", f"uid={contract.APP_UID}", f"gid={contract.APP_UID}"} <= set(options)
    assert store.pod_annotations == {gke.GCS_FUSE_ANNOTATION: "true"}, "the webhook injects the sidecar by it"
    assert store.needs_service_account_token is False, "the driver gets the pod's token from the kubelet"


def test_workload_principal_names_the_kubernetes_service_account() -> None:
    assert gke.workload_principal("123", "my-ml-project", "ml", "ml-workload") == (
        "principal://iam.googleapis.com/projects/123/locations/global/"
        "workloadIdentityPools/my-ml-project.svc.id.goog/subject/ns/ml/sa/ml-workload"
    )


def test_registry_and_credentials_command() -> None:
    assert gke.registry_server("us-central1", "p", "mlstack") == "us-central1-docker.pkg.dev/p/mlstack"
    assert gke.get_credentials_command("c", "us-central1-a", "p") == (
        "gcloud container clusters get-credentials c --location us-central1-a --project p"
    )


def test_kubeconfig_holds_no_credential_and_uses_the_auth_plugin() -> None:
    config = yaml.safe_load(gke.kubeconfig("p", "us-central1-a", "c", "192.0.2.1", "Q0E="))
    assert config["current-context"] == "gke_p_us-central1-a_c"
    assert config["clusters"][0]["cluster"] == {"server": "https://192.0.2.1", "certificate-authority-data": "Q0E="}
    (user,) = config["users"]
    assert set(user["user"]) == {"exec"}, "a token or certificate would be stored in the stack's state"
    assert user["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
