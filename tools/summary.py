"""The short human summary at the top of a render (``render/<stack>/summary.md``): what the stack would
run on, read from the resources it registers, never from its config, so a reviewer sees what the
program would ask the cloud for.

Clusters (AKS ``ManagedCluster``, GKE ``Cluster``, the local ``LocalCluster`` component), their
node pools (machine or VM size, GPU type and count, node bounds, Spot, zones, taints), the
registry (ACR, Artifact Registry, or the host the images are pushed to), the model store (a GCS
bucket, a PersistentVolumeClaim), the endpoint (LoadBalancer Services, the stack's ``url``), the
images, the Kubernetes version the stack exports, and how many resources each provider manages.
A name the provider generates (an auto-named cluster, a bucket suffix) is the mocks' answer.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from tools import harness

AKS_CLUSTER: Final = "azure-native:containerservice:ManagedCluster"
AKS_POOL: Final = "azure-native:containerservice:AgentPool"
GKE_CLUSTER: Final = "gcp:container/cluster:Cluster"
GKE_POOL: Final = "gcp:container/nodePool:NodePool"
LOCAL_CLUSTER: Final = "mlstack:local:LocalCluster"
ACR: Final = "azure-native:containerregistry:Registry"
ARTIFACT_REGISTRY: Final = "gcp:artifactregistry/repository:Repository"
BUCKET: Final = "gcp:storage/bucket:Bucket"
PVC: Final = "kubernetes:core/v1:PersistentVolumeClaim"
ZONE_DASHES: Final = 2  # us-central1-a is a zone, us-central1 a region
SERVICE: Final = "kubernetes:core/v1:Service"
IMAGE: Final = "docker-build:index:Image"
K8S_PROVIDER: Final = "pulumi:providers:kubernetes"


def _inputs(registration: harness.Registration) -> dict[str, Any]:
    plain: dict[str, Any] = harness.plain(registration.inputs, redact=True)
    return plain


def _cell(value: Any) -> str:
    """A table cell: a value, or an en dash for nothing; pipes escaped."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|")


def _table(header: Iterable[str], rows: list[list[Any]]) -> list[str]:
    names = list(header)
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _of_type(run: harness.StackRun, type_: str) -> list[harness.Registration]:
    return sorted(run.of_type(type_), key=lambda r: r.urn)


def _provider_name(registration: harness.Registration) -> str:
    """The name the cloud knows it by: the provider's answer, else the explicit input, else the Pulumi name."""
    name = registration.outputs.get("name")
    return str(name) if isinstance(name, str) and name else registration.name


def _nodes(fixed: Any, low: Any, high: Any, autoscaling: bool) -> str:
    if autoscaling:
        return f"{_cell(low)}-{_cell(high)} (autoscaled)"
    return f"{_cell(fixed)} (fixed)"


def _azure_gpu_sizes() -> Mapping[str, Any]:
    """The catalogue's Azure GPU sizes, where the rendered commit keeps them: mlstack.clouds.azure, or before
    the clouds had modules of their own, mlstack.catalogue (tools/review.py renders a base commit with this
    file, RENDERER_FILES)."""
    try:
        module = importlib.import_module("mlstack.clouds.azure")
    except ModuleNotFoundError:
        module = importlib.import_module("mlstack.catalogue")
    sizes: Mapping[str, Any] = module.AZURE_GPU_SIZES
    return sizes


def _azure_gpu(vm_size: str) -> str:
    """The GPU a VM size carries, by the catalogue's size table (a fact of the size, not config)."""
    size = _azure_gpu_sizes().get(vm_size)
    return f"{size.gpus} x {size.gpu_model}" if size else "none"


def _aks_pool_row(cluster: str, pool: Mapping[str, Any], name: str) -> list[Any]:
    vm_size = str(pool.get("vmSize") or "")
    spot = pool.get("scaleSetPriority") == "Spot"
    if spot and pool.get("spotMaxPrice") is not None:
        price = pool["spotMaxPrice"]
        spot_text = f"yes (max price {'on-demand' if price == -1 else price})"
    else:
        spot_text = "yes" if spot else "no"
    nodes = _nodes(pool.get("count"), pool.get("minCount"), pool.get("maxCount"), bool(pool.get("enableAutoScaling")))
    mode = pool.get("mode")
    return [
        f"{name} ({mode})" if mode else name,
        cluster,
        vm_size,
        _azure_gpu(vm_size),
        nodes,
        spot_text,
        pool.get("availabilityZones"),
        pool.get("nodeTaints"),
    ]


def _gke_pool_row(registration: harness.Registration) -> list[Any]:
    pool = _inputs(registration)
    config = pool.get("nodeConfig") or {}
    accelerators = [f"{a.get('count')} x {a.get('type')}" for a in config.get("guestAccelerators") or []]
    scaling = pool.get("autoscaling") or {}
    if "totalMinNodeCount" in scaling or "totalMaxNodeCount" in scaling:
        nodes = _nodes(None, scaling.get("totalMinNodeCount"), scaling.get("totalMaxNodeCount"), True)
    elif scaling:
        low, high = scaling.get("minNodeCount"), scaling.get("maxNodeCount")
        nodes = _nodes(None, low, high, True) + " per zone"
    else:
        nodes = _nodes(pool.get("nodeCount", pool.get("initialNodeCount")), None, None, False)
    taints = [f"{t.get('key')}={t.get('value')}:{t.get('effect')}" for t in config.get("taints") or []]
    return [
        _provider_name(registration),
        pool.get("cluster"),
        config.get("machineType"),
        accelerators or "none",
        nodes,
        bool(config.get("spot") or config.get("preemptible")),
        pool.get("nodeLocations") or pool.get("location"),
        taints,
    ]


def _clusters(run: harness.StackRun) -> tuple[list[list[Any]], list[list[Any]]]:
    """Rows of the clusters table and of the node-pools table."""
    clusters: list[list[Any]] = []
    pools: list[list[Any]] = []
    for registration in _of_type(run, AKS_CLUSTER):
        cluster = _inputs(registration)
        name = _provider_name(registration)
        network = cluster.get("networkProfile") or {}
        clusters.append(
            [
                name,
                "AKS",
                cluster.get("location"),
                cluster.get("kubernetesVersion") or f"AKS default ({run.kubernetes_version})",
                ", ".join(
                    f"{key} {network[key]}"
                    for key in ("networkPlugin", "networkPluginMode", "networkDataplane", "networkPolicy")
                    if key in network
                ),
                f"resource group {cluster.get('resourceGroupName')}, DNS prefix {cluster.get('dnsPrefix')}, "
                f"upgrades {(cluster.get('autoUpgradeProfile') or {}).get('upgradeChannel', 'none')}",
            ]
        )
        pools += [_aks_pool_row(name, pool, str(pool.get("name"))) for pool in cluster.get("agentPoolProfiles") or []]
    for registration in _of_type(run, AKS_POOL):
        pool = _inputs(registration)
        pools.append(_aks_pool_row(str(pool.get("resourceName")), pool, str(pool.get("agentPoolName"))))
    for registration in _of_type(run, GKE_CLUSTER):
        cluster = _inputs(registration)
        location = str(cluster.get("location") or "")
        zonal = location.count("-") == ZONE_DASHES
        channel = (cluster.get("releaseChannel") or {}).get("channel")
        clusters.append(
            [
                _provider_name(registration),
                "GKE",
                f"{location} ({'zonal' if zonal else 'regional'})",
                cluster.get("minMasterVersion") or f"{channel or 'no'} channel default ({run.kubernetes_version})",
                f"datapath {cluster.get('datapathProvider', 'LEGACY_DATAPATH (default)')}, "
                f"network {cluster.get('network', 'default')}, subnetwork {cluster.get('subnetwork', 'default')}",
                f"project {cluster.get('project')}, workload pool "
                f"{(cluster.get('workloadIdentityConfig') or {}).get('workloadPool')}",
            ]
        )
    pools += [_gke_pool_row(registration) for registration in _of_type(run, GKE_POOL)]
    for registration in _of_type(run, LOCAL_CLUSTER):
        providers = [r for r in _of_type(run, K8S_PROVIDER) if r.parent == registration.urn]
        context = ", ".join(str(_inputs(p).get("context")) for p in providers) or "the current context"
        clusters.append(
            [
                registration.name,
                "local (kind, minikube)",
                f"kubeconfig context {context}",
                run.kubernetes_version,
                "the cluster's own",
                "no cloud: nodes, GPUs and registry are the cluster's own",
            ]
        )
    return clusters, pools


def _registries(run: harness.StackRun) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for registration in _of_type(run, ACR):
        acr = _inputs(registration)
        server = registration.outputs.get("loginServer") or f"{acr.get('registryName')}.azurecr.io"
        rows.append(
            ["ACR", server, acr.get("location"), f"SKU {(acr.get('sku') or {}).get('name')}, admin user "
             f"{'enabled' if acr.get('adminUserEnabled') else 'disabled'}"]
        )  # fmt: skip
    for registration in _of_type(run, ARTIFACT_REGISTRY):
        repo = _inputs(registration)
        url = f"{repo.get('location')}-docker.pkg.dev/{repo.get('project')}/{repo.get('repositoryId')}"
        rows.append(["Artifact Registry", url, repo.get("location"), f"format {repo.get('format')}"])
    if not rows:
        hosts = sorted(
            {
                str(tag).split("/", 1)[0]
                for image in _of_type(run, IMAGE)
                for tag in _inputs(image).get("tags") or []
                if "/" in str(tag)
            }
        )
        rows += [["pushed to", host, "-", "not managed by the stack"] for host in hosts]
    return rows


def _model_stores(run: harness.StackRun) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for registration in _of_type(run, BUCKET):
        bucket = _inputs(registration)
        rows.append(
            ["GCS bucket", bucket.get("name") or _provider_name(registration), bucket.get("location"),
             f"uniform access {_cell(bucket.get('uniformBucketLevelAccess'))}, public access prevention "
             f"{bucket.get('publicAccessPrevention')}"]
        )  # fmt: skip
    for registration in _of_type(run, PVC):
        claim = harness.manifest(registration, redact=True)
        spec = claim.get("spec") or {}
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        rows.append(
            ["PersistentVolumeClaim", f"{claim['metadata'].get('namespace')}/{claim['metadata'].get('name')}",
             f"storage class {spec.get('storageClassName', '(cluster default)')}",
             f"{_cell(spec.get('accessModes'))}, {size}"]
        )  # fmt: skip
    return rows


def _endpoints(run: harness.StackRun) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for registration in _of_type(run, SERVICE):
        service = harness.manifest(registration, redact=True)
        spec = service.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        ports = [f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []]
        rows.append(
            [f"{service['metadata'].get('namespace')}/{service['metadata'].get('name')}", "LoadBalancer", ports,
             spec.get("loadBalancerSourceRanges") or "anyone (no loadBalancerSourceRanges)"]
        )  # fmt: skip
    if "url" in run.exports and "url" not in run.secret_exports:
        rows.append(["stack output url", run.exports["url"], "-", "the mocks' address offline"])
    return rows


def _images(run: harness.StackRun) -> list[list[Any]]:
    rows = []
    for registration in _of_type(run, IMAGE):
        image = _inputs(registration)
        rows.append(
            [registration.name, image.get("tags"), (image.get("context") or {}).get("location"),
             image.get("platforms") or "the builder's own", "yes" if image.get("push") else "no"]
        )  # fmt: skip
    return rows


def summary_markdown(stack: str, run: harness.StackRun) -> str:
    counts = Counter(r.type.split(":", 1)[0] for r in run.registrations.values())
    clusters, pools = _clusters(run)
    lines = [
        f"# Stack `{stack}`",
        "",
        f"Kubernetes {run.kubernetes_version} (the stack's `kubernetesVersion` output). "
        f"{len(run.registrations)} resources: "
        + ", ".join(f"{counts[package]} {package}" for package in sorted(counts))
        + ". Read from the resources the program registers (`resources/`), offline; "
        "names a provider generates are the mocks'.",
        "",
        "## Clusters",
        "",
        *_table(["cluster", "kind", "location", "Kubernetes", "network", "also"], clusters),
        "## Node pools",
        "",
        *(
            _table(["pool", "cluster", "machine / VM size", "GPUs per node", "nodes", "Spot", "zones", "taints"], pools)
            if pools
            else ["The cluster's own nodes.", ""]
        ),
        "## Registry",
        "",
        *_table(["registry", "address", "location", "notes"], _registries(run)),
        "## Model store",
        "",
        *_table(["store", "name", "where", "notes"], _model_stores(run)),
        "## Endpoint",
        "",
        *_table(["endpoint", "type or address", "ports", "who may connect"], _endpoints(run)),
        "## Images",
        "",
        *_table(["image", "tags", "context", "platforms", "pushed"], _images(run)),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
