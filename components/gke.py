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

from components import keda
from components.target import (
    GPU_POOL,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    POOL_LABEL_KEY,
    SYSTEM_POOL,
    Autoscaler,
    CsiVolume,
    Destination,
    GpuScheduling,
    ModelStore,
    Peer,
    PrometheusSource,
    Registry,
    Toleration,
    registered_outputs,
)
from mlapp import contract
from mlstack import autoscaling, catalogue, quota, rules
from mlstack.clouds import gcp, gcp_api, gcp_locations
from mlstack.monitoring import ScrapeBy
from mlstack.problems import Problem, format_problems

GCS_FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
# The GCS FUSE webhook injects its sidecar only into pods that carry this annotation.
GCS_FUSE_ANNOTATION = "gke-gcsfuse/volumes"
# implicit-dirs: the trainer writes <model>/<version>/model.onnx without creating
# directory objects. uid/gid: the app runs as contract.APP_UID, and gcsfuse presents every
# file as owned by the mounting user unless told otherwise (fsGroup alone sets the modes).
GCS_FUSE_MOUNT_OPTIONS = f"implicit-dirs,uid={contract.APP_UID},gid={contract.APP_UID}"

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
# KEDA reads the servers' load from Managed Service for Prometheus through its Prometheus-compatible
# query API, as its Google service account: "Assign the Monitoring Viewer role (namely
# `roles/monitoring.viewer`) to the Google Service Account", "Example:
# `https://monitoring.googleapis.com/v1/projects/GOOGLE_PROJECT_ID/location/global/prometheus`" (keda-docs
# content/docs/2.20/scalers/prometheus.md, "Google Managed Service for Prometheus"). The documented
# identity is a Google service account the operator's Kubernetes one impersonates (roles/iam.
# workloadIdentityUser for PROJECT.svc.id.goog[keda/keda-operator], and the chart's podIdentity.gcp values
# annotating the account: authentication-providers/gcp-workload-identity.md); KEDA then asks Application
# Default Credentials for a token (pkg/scalers/gcp/gcp_common.go, v2.20.2).
KEDA_PROJECT_ROLE = "roles/monitoring.viewer"
WORKLOAD_IDENTITY_USER_ROLE = "roles/iam.workloadIdentityUser"
# The trainer reads, writes and deletes objects (publishing replaces files; gcsfuse renames a file as
# copy then delete on a flat bucket), with no bucket administration: "Storage Object User"
# (storage.objects.*, no bucket IAM). The internet-facing server only reads and lists: "Storage Object
# Viewer" (storage.objects.get and .list), so a compromised server cannot poison a model. A read-only
# mount would not stop it: the mount option binds gcsfuse, not the identity behind it. Roles:
# https://cloud.google.com/storage/docs/access-control/iam-roles; the roles the GCS FUSE CSI driver
# needs for read-write and read-only mounts:
# https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-setup#authentication
TRAINER_BUCKET_ROLE = "roles/storage.objectUser"
SERVER_BUCKET_ROLE = "roles/storage.objectViewer"
# GKE Dataplane V2 (Cilium) enforces NetworkPolicy itself: "Kubernetes Network policy is always on in
# clusters with GKE Dataplane V2" (https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2),
# and Calico's policy add-on may not be turned on beside it (the API refuses "Enabling NetworkPolicy for
# clusters with DatapathProvider=ADVANCED_DATAPATH"). It can only be chosen when a cluster is created:
# datapath_provider is ForceNew (hashicorp/terraform-provider-google,
# google/services/container/resource_container_cluster.go), so on an existing cluster `pulumi up`
# replaces the cluster (docs/gke.md says so).
DATAPATH_PROVIDER = "ADVANCED_DATAPATH"
# Where the pods' NetworkPolicy lets the GCS FUSE sidecar (in the pod's network) get credentials and
# data. "If you have a strict cluster network policy in place, you must allow egress to ...
# 169.254.169.252/32 on port 988. For clusters running GKE Dataplane V2, ensure that you allowed egress
# to 169.254.169.254/32 on port 80" (https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity);
# the driver "queries the GKE Metadata Server twice in a mounting lifecycle" and reads the bucket
# through https://storage.googleapis.com (GoogleCloudPlatform/gcs-fuse-csi-driver, docs/troubleshooting.md).
# Google's API addresses are many and change, and a NetworkPolicy names no host: port 443 to any
# public address, never to the private ranges (where cluster services would be; Dataplane V2's ipBlock
# matches no pod or node anyway).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
GCS_FUSE_EGRESS = (
    Destination("169.254.169.252/32", (988,), "the GKE metadata server (Workload Identity tokens)"),
    Destination("169.254.169.254/32", (80,), "the GKE metadata server under Dataplane V2"),
    Destination("0.0.0.0/0", (443,), "Cloud Storage's API (storage.googleapis.com)", except_cidrs=PRIVATE_RANGES),
)
# DNS the node answers, beside the DNS pods components/network.py allows (kube-dns and node-local-dns):
# NodeLocal DNSCache, "enabled by default" on Standard clusters from 1.34.1-gke.3720000
# (https://cloud.google.com/kubernetes-engine/docs/how-to/nodelocal-dns-cache), listens on
# 169.254.20.10 (kubernetes cluster/addons/dns/nodelocaldns/README.md); on Dataplane V2 a lookup may instead
# be redirected to the node's node-local-dns pod, which network.NODE_LOCAL_DNS names, so both are allowed
# (gke-labs/kube-agents does the same). With Cloud DNS for GKE the
# kubelet writes nameserver 169.254.169.254 into the pods' resolv.conf, and a policy that allows only
# the kube-dns pods drops every lookup on Dataplane V2 (tektoncd/operator#4000, fixed in #4001 the same
# way). Either may be turned on after the cluster is made; the pods' lookups must keep working.
NODE_DNS = tuple(
    Destination(cidr, (53,), why, protocol=protocol)
    for cidr, why in (("169.254.169.254/32", "Cloud DNS for GKE"), ("169.254.20.10/32", "NodeLocal DNSCache"))
    for protocol in ("UDP", "TCP")
)
# Google Cloud Managed Service for Prometheus: its collectors (a DaemonSet in gmp-system) scrape pods
# directly (GoogleCloudPlatform/prometheus-engine, manifests/operator.yaml: DaemonSet "collector",
# pod label app.kubernetes.io/name: collector).
METRICS_SCRAPERS = (Peer("gmp-system", {"app.kubernetes.io/name": "collector"}),)
REGISTRY_USERNAME = "oauth2accesstoken"  # Artifact Registry's user name for an OAuth access token

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,9}$")  # short: it prefixes account and bucket names


class GkeError(pulumi.RunError):
    """The GKE cluster cannot be built with these arguments."""


@dataclass(frozen=True)
class GkeGpuClusterArgs:
    project: str
    region: str
    location: str  # a zone of ``region`` (zonal cluster) or ``region`` itself (regional)
    # A minor ("1.36"): the control plane's minimum, upgraded from there by the channel; None: the
    # channel's default for a new cluster.
    kubernetes_version: str | None
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
    # The Kubernetes service accounts the workloads run as: Workload Identity maps each to the
    # principal granted on the model bucket, the trainer's to write, the server's to read.
    workload_namespace: str
    trainer_service_account: str
    server_service_account: str
    bucket_force_destroy: bool = False
    quota_check: bool = True  # read the project's quotas in the region before creating anything


# --- pure builders -------------------------------------------------------------


def check_args(args: GkeGpuClusterArgs) -> list[Problem]:
    """Every problem with ``args``, by the rules the config loader applies; empty when valid."""
    zone = None if args.location == args.region else args.location
    return [
        *rules.one_of("gkeReleaseChannel", args.release_channel, gcp.GKE_RELEASE_CHANNELS),
        *rules.one_of("gkeGpuDriverVersion", args.gpu_driver_version, gcp.GCP_GPU_DRIVER_VERSIONS),
        *gcp.gcp_gpu_pool(args.gpu_type, args.gpu_machine_type, args.gpu_count),
        *rules.gpu_pool_size(args.gpu_min_nodes, args.gpu_max_nodes),
        *rules.system_node_count(args.system_node_count),
        *gcp.gcp_zone(zone, args.region),
        *gcp.artifact_repository_id(args.repository_id),
        *gcp.arm_system_pool(args.system_machine_type),
        *gcp.gke_gpu_machine_limits(args.gpu_type, args.gpu_machine_type, args.gpu_count, zone),
        *gcp.gke_on_demand(args.gpu_machine_type, args.gpu_spot),
        *(gcp.gcp_region(args.region) or gcp.gke_gpu_where(args.gpu_type, args.gpu_machine_type, args.region, zone)),
    ]


def kubernetes_version(args: GkeGpuClusterArgs) -> str:
    """The minor the cluster runs: the pinned one once the channel confirms it offers it, else its default.

    During preview and up the engine's serverConfig for the location is read (pulumi-gcp's
    getEngineVersions); a pinned minor the release channel does not offer stops the run.
    """
    answer = container.get_engine_versions(location=args.location, project=args.project)
    config = gcp.GkeServerConfig(
        valid_master_versions=list(answer.valid_master_versions or []),
        channel_defaults=dict(answer.release_channel_default_version or {}),
        channel_latest=dict(answer.release_channel_latest_version or {}),
    )
    found = gcp.from_gke_server_config(config, args.release_channel, args.location, catalogue.today())
    pinned = args.kubernetes_version
    problems = rules.kubernetes_version_offered(pinned or "", found.minors, found.where)
    if problems:
        raise GkeError(format_problems("cannot build the GKE cluster", problems))
    return pinned or found.default or gcp.GKE_DEFAULT_MINOR


def check_quota(args: GkeGpuClusterArgs) -> None:
    """Stop before anything is created when the region's quotas cannot hold both pools at their largest.

    Compute Engine's regions.get quotas (mlstack.clouds.gcp_api, with the deployer's access token) against the
    system pool in each of its zones with the upgrade surge, and the GPU pool at gpuMaxNodes: its GPUs
    (PREEMPTIBLE_ ones on Spot) and vCPUs (mlstack.quota). A quota the answer lacks is named but not
    judged; an answer that cannot be read is said and never stops the run.
    """
    where = f"GCP region {args.region}"
    if not args.quota_check:
        pulumi.log.info(f"quota in {where}: not checked (mlstack:quotaCheck is false)")
        return
    zone = None if args.location == args.region else args.location
    needs = gcp.needs_gcp(
        system_machine_type=args.system_machine_type,
        system_nodes=args.system_node_count,
        system_zones=gcp_locations.pool_zone_count(args.region, zone),
        gpu_machine_type=args.gpu_machine_type,
        gpu_type=args.gpu_type,
        gpu_count=args.gpu_count,
        gpu_max_nodes=args.gpu_max_nodes,
        gpu_spot=args.gpu_spot,
    )
    try:
        token = organizations.get_client_config().access_token
        quotas = gcp_api.region_quotas(args.project, args.region, token)
    except gcp_api.GoogleApiError as e:
        pulumi.log.warn(f"quota in {where}: not checked, the region's quotas could not be read ({e})")
        return
    fits, report = quota.verdict(needs, quotas, gcp.GKE_QUOTA_INCREASE, args.region, args.project)
    if not fits:
        raise GkeError(f"the GKE cluster does not fit its quotas; nothing was created.\n{report}")
    pulumi.log.info(f"quota in {where}: enough for both pools at their largest" + (f"\n{report}" if report else ""))


def workload_principal(project_number: str, project: str, namespace: str, service_account: str) -> str:
    """The IAM principal Workload Identity Federation for GKE gives a Kubernetes service account.

    Granting a role to it directly needs no Google service account and no
    annotation on the Kubernetes one.
    """
    return (
        f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{project}.svc.id.goog/subject/ns/{namespace}/sa/{service_account}"
    )


def query_api(project: str) -> str:
    """Managed Service for Prometheus's query API for a project, as KEDA's Prometheus scaler takes it."""
    return f"https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus"


def keda_values(gcp_service_account: pulumi.Input[str]) -> dict[str, Any]:
    """The chart's values on GKE: the operator's account annotated with the Google service account it acts
    as (keda/values.yaml v2.20.2, ``podIdentity.gcp``)."""
    return {"podIdentity": {"gcp": {"enabled": True, "gcpIAMServiceAccount": gcp_service_account}}}


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


def gpu_scheduling(gpu_type: str, gpu_count: int, max_nodes: int) -> GpuScheduling:
    """Pods land on the GPU pool by its label and tolerate its taint (GPU_TAINT_*)."""
    return GpuScheduling(
        container_env=GKE_GPU_CONTAINER_ENV,
        node_selector={POOL_LABEL_KEY: GPU_POOL, ACCELERATOR_LABEL: gpu_type},
        tolerations=(Toleration(key=GPU_TAINT_KEY, operator="Equal", value=GPU_TAINT_VALUE, effect="NoSchedule"),),
        gpus_per_node=gpu_count,
        max_nodes=max_nodes,
        gpu_model=gpu_type,
    )


def node_config(  # noqa: PLR0913 - the GPU pool's extras are keyword-only, none by default
    machine_type: str,
    pool: str,
    service_account: pulumi.Input[str],
    *,
    guest_accelerators: list[container.NodePoolNodeConfigGuestAcceleratorArgs] | None = None,
    spot: bool | None = None,
    taints: list[container.NodePoolNodeConfigTaintArgs] | None = None,
) -> container.NodePoolNodeConfigArgs:
    """A pool's nodes: the dedicated service account, no node identity for pods, the pool label."""
    return container.NodePoolNodeConfigArgs(
        machine_type=machine_type,
        service_account=service_account,
        oauth_scopes=[CLOUD_PLATFORM_SCOPE],  # IAM roles, not scopes, limit what nodes do
        # The GKE metadata server: pods get their own identity, never the node's.
        workload_metadata_config=container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        labels={POOL_LABEL_KEY: pool},
        guest_accelerators=guest_accelerators,
        spot=spot,
        taints=taints,
    )


def gpu_node_config(args: GkeGpuClusterArgs, service_account: pulumi.Input[str]) -> container.NodePoolNodeConfigArgs:
    """The GPU pool's nodes: the accelerators with the driver GKE installs, Spot or not, the GPU taint."""
    driver = container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
        gpu_driver_version=args.gpu_driver_version
    )
    return node_config(
        args.gpu_machine_type,
        GPU_POOL,
        service_account,
        guest_accelerators=[
            container.NodePoolNodeConfigGuestAcceleratorArgs(
                type=args.gpu_type, count=args.gpu_count, gpu_driver_installation_config=driver
            )
        ],
        spot=args.gpu_spot,
        # GKE puts this taint on GPU nodes itself; declaring it keeps previews clean.
        taints=[container.NodePoolNodeConfigTaintArgs(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE")],
    )


def gcs_model_store(bucket_name: pulumi.Input[str]) -> ModelStore:
    """The model store: the bucket, mounted into each pod by the GCS FUSE CSI driver's sidecar."""
    return ModelStore(
        csi=CsiVolume(
            driver=GCS_FUSE_DRIVER,
            volume_attributes={"bucketName": bucket_name, "mountOptions": GCS_FUSE_MOUNT_OPTIONS},
        ),
        pod_annotations={GCS_FUSE_ANNOTATION: "true"},
        # The kubelet hands the driver a token of the pod's service account
        # (the CSIDriver's tokenRequests), and the driver exchanges it for
        # Google credentials; the app never calls Google APIs, so the pods
        # keep no token of their own.
        needs_service_account_token=False,
        # The sidecar runs in the pod's network: the pod's NetworkPolicy must let it out.
        egress=GCS_FUSE_EGRESS,
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
    metrics_scrapers: tuple[Peer, ...]
    scrape_by: ScrapeBy
    pod_egress: tuple[Destination, ...]
    kube_context: str | None
    kubernetes_version: str
    cluster_name: pulumi.Output[str]
    location: str
    registry_url: str
    bucket_name: pulumi.Output[str]
    get_credentials: pulumi.Output[str]
    autoscaler: Autoscaler

    def __init__(self, name: str, args: GkeGpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        problems: list[Problem | str] = [*check_args(args)]
        if not _NAME.match(name):
            problems.append(f"GkeGpuCluster name {name!r}: must be 1-10 lower-case letters, digits or '-'")
        if problems:
            raise GkeError(format_problems("cannot build the GKE cluster", problems))
        # Asked before anything is registered: a version the channel does not offer, or quotas too small for the
        # pools at their largest, stop the run here.
        self.kubernetes_version = kubernetes_version(args)
        check_quota(args)

        super().__init__("mlstack:gke:GkeGpuCluster", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        # Account IDs and bucket names must be unique (the bucket worldwide), and
        # stable across updates: derive them from the project, stack and name.
        unique = _short_hash(args.project, pulumi.get_project(), pulumi.get_stack(), name)

        node_account = self._node_account(unique)
        node_member = node_account.email.apply(lambda email: f"serviceAccount:{email}")
        self._node_roles(node_member)
        registry_reader = self._registry(node_member)
        bucket = self._model_bucket(unique)
        cluster = self._cluster()
        system_pool, gpu_pool = self._node_pools(cluster, node_account.email)
        bucket_access = self._bucket_access(bucket, cluster)
        self._kubernetes(cluster, depends_on=[system_pool, gpu_pool, *bucket_access, registry_reader])
        self.autoscaler = self._keda(cluster, unique)

        self.gpu = gpu_scheduling(args.gpu_type, args.gpu_count, args.gpu_max_nodes)
        self.model_store = gcs_model_store(bucket.name)
        self.external_load_balancer = gcp.CLOUD.external_load_balancer
        self.metrics_scrapers = METRICS_SCRAPERS
        self.scrape_by = gcp.GKE_SCRAPE_BY
        self.pod_egress = NODE_DNS
        self.kube_context = None  # the kubeconfig names its own context
        self.location = args.location
        self.bucket_name = bucket.name
        self.get_credentials = cluster.name.apply(
            lambda cluster_name: get_credentials_command(cluster_name, args.location, args.project)
        )
        self.register_outputs(registered_outputs(self))

    @property
    def stack_outputs(self) -> dict[str, pulumi.Input[str]]:
        """What a GKE user needs next (push images, kubectl): the stack exports them, the component registers them."""
        return {
            "clusterName": self.cluster_name,
            "location": self.location,
            "registryUrl": self.registry_url,
            "modelBucket": self.bucket_name,
            "getCredentials": self.get_credentials,
        }

    def _node_account(self, unique: str) -> serviceaccount.Account:
        return serviceaccount.Account(
            f"{self._name}-nodes",
            project=self._args.project,
            account_id=f"{self._name}-nodes-{unique}",
            display_name=f"GKE nodes of {self._name} ({pulumi.get_stack()})",
            opts=self._child,
        )

    def _node_roles(self, node_member: pulumi.Output[str]) -> None:
        for role in NODE_PROJECT_ROLES:
            projects.IAMMember(
                f"{self._name}-nodes-{role.removeprefix('roles/').replace('.', '-')}",
                project=self._args.project,
                role=role,
                member=node_member,
                opts=self._child,
            )

    def _registry(self, node_member: pulumi.Output[str]) -> artifactregistry.RepositoryIamMember:
        """The Artifact Registry repository the images are pushed to; sets ``registry``. Returns the nodes' grant."""
        args = self._args
        repository = artifactregistry.Repository(
            f"{self._name}-registry",
            project=args.project,
            location=args.region,
            repository_id=args.repository_id,
            format="DOCKER",
            description=f"mlstack images ({pulumi.get_stack()})",
            opts=self._child,
        )
        # On the repository, not the project: the nodes can pull these images only.
        reader = artifactregistry.RepositoryIamMember(
            f"{self._name}-nodes-registry-reader",
            project=args.project,
            location=args.region,
            repository=repository.repository_id,
            role=REGISTRY_READER_ROLE,
            member=node_member,
            opts=self._child,
        )
        client = organizations.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        server = registry_server(args.region, args.project, args.repository_id)
        self.registry_url = server
        # A short-lived token of whoever runs `pulumi up`, which is when images are
        # pushed; kept secret so it never lands in state or output in clear.
        self.registry = Registry(
            # An output of the repository, not the plain string: a push needs the
            # repository to exist, so the image builds wait for it (and nothing else here).
            server=repository.repository_id.apply(lambda _: server),
            username=REGISTRY_USERNAME,
            password=pulumi.Output.secret(client.access_token),
        )
        return reader

    def _model_bucket(self, unique: str) -> storage.Bucket:
        args = self._args
        return storage.Bucket(
            f"{self._name}-models",
            project=args.project,
            name=f"{args.project}-models-{unique}",
            # Same region as the nodes: no cross-region egress on every model load.
            location=args.region.upper(),
            uniform_bucket_level_access=True,  # required by Workload Identity for read-write mounts
            public_access_prevention="enforced",
            force_destroy=args.bucket_force_destroy,
            opts=self._child,
        )

    def _cluster(self) -> container.Cluster:
        args = self._args
        cluster = container.Cluster(
            f"{self._name}-cluster",
            project=args.project,
            location=args.location,
            # Pools are separate resources (inline and separate pools fight); GKE
            # insists on creating a default pool, which is removed straight away.
            remove_default_node_pool=True,
            initial_node_count=1,
            release_channel=container.ClusterReleaseChannelArgs(channel=args.release_channel),
            # At least the pinned minor, upgraded from there by the channel; None: the channel's default,
            # the one kubernetes_version() read.
            min_master_version=args.kubernetes_version,
            workload_identity_config=container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{args.project}.svc.id.goog"
            ),
            # Enforces the workloads' NetworkPolicies (DATAPATH_PROVIDER says why this one).
            datapath_provider=DATAPATH_PROVIDER,
            # Managed Service for Prometheus's managed collection: the gmp-system collectors that read our
            # PodMonitoring objects (METRICS_SCRAPERS); the API's MonitoringConfig.managedPrometheusConfig
            # .enabled, "Enable Managed Collection" (Google.Cloud.Container.V1 ManagedPrometheusConfig). On by
            # default on new Standard clusters from GKE 1.27 (GKE release notes, June 26 2023, as cited in
            # GoogleCloudPlatform/kubeflow-distribution#422), as the shipped stack's 1.33 is; said explicitly
            # all the same, for an older minVersion and so that no default change turns our scraping off unseen.
            # monitoring_config may not be set beside the legacy monitoring_service ("Cannot specify
            # logging_config or monitoring_config together with logging_service or monitoring_service",
            # hashicorp/terraform-provider-google#12385), which the cluster leaves unset.
            monitoring_config=container.ClusterMonitoringConfigArgs(
                managed_prometheus=container.ClusterMonitoringConfigManagedPrometheusArgs(enabled=True)
            ),
            addons_config=container.ClusterAddonsConfigArgs(
                gcs_fuse_csi_driver_config=container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True),
            ),
            deletion_protection=args.deletion_protection,
            opts=self._child,
        )
        self.cluster_name = cluster.name
        return cluster

    def _node_pools(
        self, cluster: container.Cluster, node_account: pulumi.Output[str]
    ) -> tuple[container.NodePool, container.NodePool]:
        args = self._args
        management = container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True)
        system_pool = container.NodePool(
            f"{self._name}-system",
            project=args.project,
            cluster=cluster.name,
            location=args.location,
            node_count=args.system_node_count,
            node_config=node_config(args.system_machine_type, SYSTEM_POOL, node_account),
            management=management,
            opts=self._child,
        )
        gpu_pool = container.NodePool(
            f"{self._name}-gpu",
            project=args.project,
            cluster=cluster.name,
            location=args.location,
            # Totals, not per-zone counts: gpuMaxNodes means the same on a zonal and a
            # regional cluster. No node_count: the autoscaler owns it.
            autoscaling=container.NodePoolAutoscalingArgs(
                total_min_node_count=args.gpu_min_nodes,
                total_max_node_count=args.gpu_max_nodes,
            ),
            node_config=gpu_node_config(args, node_account),
            management=management,
            opts=self._child,
        )
        return system_pool, gpu_pool

    def _bucket_access(self, bucket: storage.Bucket, cluster: container.Cluster) -> list[storage.BucketIAMMember]:
        """The trainer's principal may write the bucket, the server's only read it."""
        args = self._args
        project_number = organizations.get_project_output(
            project_id=args.project, opts=pulumi.InvokeOutputOptions(parent=self)
        ).number

        def grant(who: str, service_account: str, role: str) -> storage.BucketIAMMember:
            principal = project_number.apply(
                lambda number: workload_principal(number, args.project, args.workload_namespace, service_account)
            )
            # The principal names the Workload Identity pool PROJECT.svc.id.goog, which exists only
            # once a cluster with Workload Identity does; granted earlier, IAM answers "Identity Pool
            # does not exist" (terraform-google-modules/terraform-google-kubernetes-engine#916,
            # googleforgames/global-multiplayer-demo#39).
            return storage.BucketIAMMember(
                f"{self._name}-models-{who}",
                bucket=bucket.name,
                role=role,
                member=principal,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
            )

        return [
            grant("trainer", args.trainer_service_account, TRAINER_BUCKET_ROLE),
            grant("server", args.server_service_account, SERVER_BUCKET_ROLE),
        ]

    def _keda(self, cluster: container.Cluster, unique: str) -> Autoscaler:
        """KEDA from its chart, querying Managed Service for Prometheus as a Google service account that may
        read metrics and nothing else (KEDA_PROJECT_ROLE says whence each piece)."""
        args = self._args
        account = serviceaccount.Account(
            f"{self._name}-keda",
            project=args.project,
            account_id=f"{self._name}-keda-{unique}",
            display_name=f"KEDA of {self._name} ({pulumi.get_stack()}): reads the servers' load",
            opts=self._child,
        )
        reader = projects.IAMMember(
            f"{self._name}-keda-monitoring-viewer",
            project=args.project,
            role=KEDA_PROJECT_ROLE,
            member=account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=self._child,
        )
        operator = f"{autoscaling.KEDA_NAMESPACE}/{autoscaling.KEDA_OPERATOR_ACCOUNT}"
        member = f"serviceAccount:{args.project}.svc.id.goog[{operator}]"
        impersonation = serviceaccount.IAMMember(
            f"{self._name}-keda-workload-identity",
            service_account_id=account.name,
            role=WORKLOAD_IDENTITY_USER_ROLE,
            member=member,
            # The pool PROJECT.svc.id.goog exists once a cluster with Workload Identity does (see _bucket_access).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )
        installed = keda.release(
            self._name, self.provider, self, keda_values(account.email), depends_on=[reader, impersonation]
        )
        return Autoscaler(
            source=PrometheusSource(
                server_address=query_api(args.project),
                pod_identity={"provider": "gcp"},
                # The API answers for every cluster of the project ("All queries issued by prometheus-adapter
                # are global in scope ... always using namespace or cluster filters", cloud.google.com/
                # stackdriver/docs/managed-prometheus/hpa); GMP labels each series with its cluster and
                # location (prometheus-engine: the collector's external labels).
                series_labels={"cluster": cluster.name, "location": args.location},
            ),
            keda_versions=(autoscaling.KEDA_CHART_VERSION,),
            ready=(installed,),
        )

    def _kubernetes(self, cluster: container.Cluster, depends_on: list[pulumi.Resource]) -> None:
        """The kubeconfig and the provider the workloads use; set as ``kubeconfig`` and ``provider``."""
        args = self._args
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate).apply(
                lambda v: kubeconfig(args.project, args.location, str(v[0]), str(v[1]), str(v[2]))
            )
        )
        self.provider = k8s.Provider(
            f"{self._name}-k8s",
            kubeconfig=self.kubeconfig,
            # Nothing in the cluster before there are nodes to run it and the
            # workloads' identity may read the bucket: a pod whose volume cannot be
            # mounted sits in ContainerCreating until `pulumi up` times out.
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
