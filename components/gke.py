"""GkeGpuCluster: a GKE cluster with a system pool and a GPU pool, an Artifact
Registry repository and a GCS model bucket reached through Workload Identity.

It fulfils ``ClusterTarget``: the workloads run on it without knowing it is GKE.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_gcp import artifactregistry, container, organizations, projects, serviceaccount, storage

from components import gpu
from components.config import GKE_RELEASE_CHANNELS
from components.target import (
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    CsiVolume,
    GpuScheduling,
    ModelStore,
    Registry,
    Toleration,
)
from components.workloads import APP_UID

GCS_FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
# The GCS FUSE webhook injects its sidecar only into pods that carry this annotation.
GCS_FUSE_ANNOTATION = "gke-gcsfuse/volumes"
# implicit-dirs: the trainer writes <model>/<version>/model.onnx without creating
# directory objects. uid/gid: the app runs as 10001, and gcsfuse presents every
# file as owned by the mounting user unless told otherwise (fsGroup alone sets the modes).
GCS_FUSE_MOUNT_OPTIONS = f"implicit-dirs,uid={APP_UID},gid={APP_UID}"

POOL_LABEL = "mlstack.dev/pool"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"  # set by GKE on every GPU node
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# What nodes need to ship logs and metrics, and nothing else (no Editor, unlike
# the Compute Engine default service account).
NODE_PROJECT_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
)
REGISTRY_READER_ROLE = "roles/artifactregistry.reader"
# Read and write objects, no bucket administration: the training Job writes the model.
MODEL_BUCKET_ROLE = "roles/storage.objectUser"
REGISTRY_USERNAME = "oauth2accesstoken"  # Artifact Registry's user name for an OAuth access token

_REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,9}$")  # short: it prefixes account and bucket names


class GkeError(pulumi.RunError):
    """The GKE cluster cannot be built with these arguments."""


@dataclass(frozen=True)
class GkeGpuClusterArgs:
    project: str
    region: str
    location: str  # a zone of ``region`` (zonal cluster) or ``region`` itself (regional)
    kubernetes_version: str  # minimum control-plane version, e.g. "1.33"
    release_channel: str
    deletion_protection: bool
    system_machine_type: str
    system_node_count: int
    gpu_machine_type: str
    gpu_type: str
    gpu_count: int
    gpu_driver_version: str
    gpu_min_nodes: int
    gpu_max_nodes: int
    gpu_spot: bool
    repository_id: str  # the Artifact Registry repository, e.g. the app's name
    # The Kubernetes service account the workloads run as: Workload Identity
    # maps it to the principal allowed on the model bucket.
    workload_namespace: str
    workload_service_account: str
    bucket_force_destroy: bool = False


# --- pure builders -------------------------------------------------------------


def check_args(args: GkeGpuClusterArgs) -> list[str]:
    """Every problem with ``args``, each naming the config key; empty when valid."""
    problems = [
        f"mlstack:{p.key} = {p.value!r}: {p.reason}"
        for p in gpu.check_gcp_gpu_pool(args.gpu_type, args.gpu_machine_type, args.gpu_count)
    ]
    if args.release_channel not in GKE_RELEASE_CHANNELS:
        problems.append(
            f"mlstack:gkeReleaseChannel = {args.release_channel!r}: must be one of {', '.join(GKE_RELEASE_CHANNELS)}"
        )
    if args.gpu_driver_version not in gpu.GCP_GPU_DRIVER_VERSIONS:
        problems.append(
            f"mlstack:gkeGpuDriverVersion = {args.gpu_driver_version!r}: "
            f"must be one of {', '.join(gpu.GCP_GPU_DRIVER_VERSIONS)}"
        )
    if not 0 <= args.gpu_min_nodes <= args.gpu_max_nodes or args.gpu_max_nodes < 1:
        problems.append(
            f"mlstack:gpuMinNodes/gpuMaxNodes = {args.gpu_min_nodes}/{args.gpu_max_nodes}: "
            "need 0 <= gpuMinNodes <= gpuMaxNodes and gpuMaxNodes >= 1"
        )
    if args.system_node_count < 1:
        problems.append(f"mlstack:systemNodeCount = {args.system_node_count}: must be at least 1")
    if args.location != args.region and not args.location.startswith(f"{args.region}-"):
        problems.append(f"mlstack:gcpZone = {args.location!r}: must be a zone of {args.region}")
    if not _REPOSITORY_ID.match(args.repository_id):
        problems.append(
            f"mlstack:appName = {args.repository_id!r}: names the Artifact Registry repository, "
            "so it must start with a letter and hold only lower-case letters, digits and hyphens"
        )
    return problems


def workload_principal(project_number: str, project: str, namespace: str, service_account: str) -> str:
    """The IAM principal Workload Identity Federation for GKE gives a Kubernetes service account.

    Granting a role to it directly needs no Google service account and no
    annotation on the Kubernetes one.
    """
    return (
        f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{project}.svc.id.goog/subject/ns/{namespace}/sa/{service_account}"
    )


def registry_server(region: str, project: str, repository_id: str) -> str:
    return f"{region}-docker.pkg.dev/{project}/{repository_id}"


def get_credentials_command(cluster_name: str, location: str, project: str) -> str:
    return f"gcloud container clusters get-credentials {cluster_name} --location {location} --project {project}"


def kubeconfig(project: str, location: str, cluster_name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig for the cluster that authenticates through gke-gcloud-auth-plugin.

    It holds no credential: the plugin asks gcloud for a short-lived token on
    every call, so the user (or CI) needs gcloud and the plugin installed.
    """
    context = f"gke_{project}_{location}_{cluster_name}"  # the name gcloud gives it
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": f"https://{endpoint}",
                        "certificate-authority-data": ca_certificate,
                    },
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "installHint": "Install gke-gcloud-auth-plugin: "
                            "gcloud components install gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
        },
        sort_keys=False,
    )


# GKE installs the NVIDIA driver on the node and mounts it into GPU containers at
# /usr/local/nvidia, without putting it on the loader path: "the CUDA libraries
# ... are available at /usr/local/nvidia/lib64 ... add this path to
# LD_LIBRARY_PATH" (cloud.google.com/kubernetes-engine/docs/how-to/gpus, "Run GPUs
# in GKE Standard node pools", "CUDA-X libraries"). Without it torch finds no
# libcuda.so.1 and sees no GPU.
GKE_GPU_CONTAINER_ENV = {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"}


def gpu_scheduling(gpu_type: str, gpu_count: int) -> GpuScheduling:
    """Pods land on the GPU pool by its label and tolerate its taint (GPU_TAINT_*)."""
    return GpuScheduling(
        container_env=GKE_GPU_CONTAINER_ENV,
        node_selector={POOL_LABEL: "gpu", ACCELERATOR_LABEL: gpu_type},
        tolerations=(Toleration(key=GPU_TAINT_KEY, operator="Equal", value=GPU_TAINT_VALUE, effect="NoSchedule"),),
        gpus_per_node=gpu_count,
        gpu_model=gpu_type,
    )


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:6]


# --- the component ---------------------------------------------------------------


class GkeGpuCluster(pulumi.ComponentResource):
    """A ClusterTarget on GKE: GPU pool from zero, Artifact Registry, GCS model store."""

    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    registry: Registry | None
    gpu: GpuScheduling | None
    model_store: ModelStore
    external_load_balancer: bool

    def __init__(self, name: str, args: GkeGpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        problems = check_args(args)
        if not _NAME.match(name):
            problems.append(f"GkeGpuCluster name {name!r}: must be 1-10 lower-case letters, digits or '-'")
        if problems:
            raise GkeError("cannot build the GKE cluster:\n" + "\n".join(f"  - {p}" for p in problems))

        super().__init__("mlstack:gke:GkeGpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Account IDs and bucket names must be unique (the bucket worldwide), and
        # stable across updates: derive them from the project, stack and name.
        unique = _short_hash(args.project, pulumi.get_project(), pulumi.get_stack(), name)

        # --- node identity ---
        node_account = serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=f"{name}-nodes-{unique}",
            display_name=f"GKE nodes of {name} ({pulumi.get_stack()})",
            opts=child,
        )
        node_member = node_account.email.apply(lambda email: f"serviceAccount:{email}")
        for role in NODE_PROJECT_ROLES:
            projects.IAMMember(
                f"{name}-nodes-{role.removeprefix('roles/').replace('.', '-')}",
                project=args.project,
                role=role,
                member=node_member,
                opts=child,
            )

        # --- registry ---
        repository = artifactregistry.Repository(
            f"{name}-registry",
            project=args.project,
            location=args.region,
            repository_id=args.repository_id,
            format="DOCKER",
            description=f"mlstack images ({pulumi.get_stack()})",
            opts=child,
        )
        # On the repository, not the project: the nodes can pull these images only.
        registry_reader = artifactregistry.RepositoryIamMember(
            f"{name}-nodes-registry-reader",
            project=args.project,
            location=args.region,
            repository=repository.repository_id,
            role=REGISTRY_READER_ROLE,
            member=node_member,
            opts=child,
        )
        client = organizations.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        server = registry_server(args.region, args.project, args.repository_id)
        # A short-lived token of whoever runs `pulumi up`, which is when images are
        # pushed; kept secret so it never lands in state or output in clear.
        self.registry = Registry(
            # An output of the repository, not the plain string: a push needs the
            # repository to exist, so the image builds wait for it (and nothing else here).
            server=repository.repository_id.apply(lambda _: server),
            username=REGISTRY_USERNAME,
            password=pulumi.Output.secret(client.access_token),
        )

        # --- model store ---
        bucket = storage.Bucket(
            f"{name}-models",
            project=args.project,
            name=f"{args.project}-models-{unique}",
            # Same region as the nodes: no cross-region egress on every model load.
            location=args.region.upper(),
            uniform_bucket_level_access=True,  # required by Workload Identity for read-write mounts
            public_access_prevention="enforced",
            force_destroy=args.bucket_force_destroy,
            opts=child,
        )
        # --- cluster ---
        cluster = container.Cluster(
            f"{name}-cluster",
            project=args.project,
            location=args.location,
            # Pools are separate resources (inline and separate pools fight); GKE
            # insists on creating a default pool, which is removed straight away.
            remove_default_node_pool=True,
            initial_node_count=1,
            release_channel=container.ClusterReleaseChannelArgs(channel=args.release_channel),
            # At least the version the manifests are validated against; the channel
            # upgrades from there.
            min_master_version=args.kubernetes_version,
            workload_identity_config=container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{args.project}.svc.id.goog"
            ),
            addons_config=container.ClusterAddonsConfigArgs(
                gcs_fuse_csi_driver_config=container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True),
            ),
            deletion_protection=args.deletion_protection,
            opts=child,
        )

        def node_config(machine_type: str, pool: str, **extra: Any) -> container.NodePoolNodeConfigArgs:
            return container.NodePoolNodeConfigArgs(
                machine_type=machine_type,
                service_account=node_account.email,
                oauth_scopes=[CLOUD_PLATFORM_SCOPE],  # IAM roles, not scopes, limit what nodes do
                # The GKE metadata server: pods get their own identity, never the node's.
                workload_metadata_config=container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
                labels={POOL_LABEL: pool},
                **extra,
            )

        management = container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True)
        system_pool = container.NodePool(
            f"{name}-system",
            project=args.project,
            cluster=cluster.name,
            location=args.location,
            node_count=args.system_node_count,
            node_config=node_config(args.system_machine_type, "system"),
            management=management,
            opts=child,
        )
        gpu_pool = container.NodePool(
            f"{name}-gpu",
            project=args.project,
            cluster=cluster.name,
            location=args.location,
            # Totals, not per-zone counts: gpuMaxNodes means the same on a zonal and a
            # regional cluster. No node_count: the autoscaler owns it.
            autoscaling=container.NodePoolAutoscalingArgs(
                total_min_node_count=args.gpu_min_nodes,
                total_max_node_count=args.gpu_max_nodes,
            ),
            node_config=node_config(
                args.gpu_machine_type,
                "gpu",
                guest_accelerators=[
                    container.NodePoolNodeConfigGuestAcceleratorArgs(
                        type=args.gpu_type,
                        count=args.gpu_count,
                        gpu_driver_installation_config=container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                            gpu_driver_version=args.gpu_driver_version
                        ),
                    )
                ],
                spot=args.gpu_spot,
                # GKE puts this taint on GPU nodes itself; declaring it keeps previews clean.
                taints=[
                    container.NodePoolNodeConfigTaintArgs(
                        key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE"
                    )
                ],
            ),
            management=management,
            opts=child,
        )

        project_number = organizations.get_project_output(
            project_id=args.project, opts=pulumi.InvokeOutputOptions(parent=self)
        ).number
        principal = project_number.apply(
            lambda number: workload_principal(
                number, args.project, args.workload_namespace, args.workload_service_account
            )
        )
        # One identity for the Job (writes) and the servers (read-only mount): the
        # workloads run both as one service account. The servers' volume is mounted
        # read-only, but IAM would let them write; a second service account with
        # objectViewer would close that.
        # The principal names the Workload Identity pool PROJECT.svc.id.goog, which
        # exists only once a cluster with Workload Identity does; granted earlier, IAM
        # answers "Identity Pool does not exist" (terraform-google-modules/
        # terraform-google-kubernetes-engine#916, googleforgames/global-multiplayer-demo#39).
        bucket_access = storage.BucketIAMMember(
            f"{name}-models-workload",
            bucket=bucket.name,
            role=MODEL_BUCKET_ROLE,
            member=principal,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )

        # --- Kubernetes access ---
        self.cluster_name: pulumi.Output[str] = cluster.name
        self.location = args.location
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate).apply(
                lambda v: kubeconfig(args.project, args.location, str(v[0]), str(v[1]), str(v[2]))
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Nothing in the cluster before there are nodes to run it and the
            # workloads' identity may read the bucket: a pod whose volume cannot be
            # mounted sits in ContainerCreating until `pulumi up` times out.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[system_pool, gpu_pool, bucket_access, registry_reader]
            ),
        )

        self.gpu = gpu_scheduling(args.gpu_type, args.gpu_count)
        self.model_store = ModelStore(
            csi=CsiVolume(
                driver=GCS_FUSE_DRIVER,
                volume_attributes={
                    "bucketName": bucket.name,
                    "mountOptions": GCS_FUSE_MOUNT_OPTIONS,
                },
            ),
            pod_annotations={GCS_FUSE_ANNOTATION: "true"},
            # The kubelet hands the driver a token of the pod's service account
            # (the CSIDriver's tokenRequests), and the driver exchanges it for
            # Google credentials; the app never calls Google APIs, so the pods
            # keep no token of their own.
            needs_service_account_token=False,
        )
        self.external_load_balancer = True
        self.registry_url = server
        self.bucket_name: pulumi.Output[str] = bucket.name
        self.get_credentials: pulumi.Output[str] = cluster.name.apply(
            lambda cluster_name: get_credentials_command(cluster_name, args.location, args.project)
        )

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "location": self.location,
                "registryUrl": self.registry_url,
                "modelBucket": self.bucket_name,
                "kubeconfig": self.kubeconfig,
                "getCredentials": self.get_credentials,
            }
        )
