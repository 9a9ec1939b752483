"""AksGpuCluster: AKS with a GPU pool that scales to zero, a registry and the NVIDIA device plugin.

A ClusterTarget: the workloads get a Kubernetes provider built from this
cluster's kubeconfig, the registry to push to (the kubelet pulls through an
AcrPull role assignment, no pull secret), how to land on the GPU pool, and a
model store on Azure Files (ReadWriteMany, so the Job and the serving pods on
other nodes share it).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi_azure_native import (
    authorization,
    containerregistry,
    containerservice,
    managedidentity,
    monitor,
    resources,
)

from components import network
from components.target import (
    GPU_POOL,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    POOL_LABEL_KEY,
    SYSTEM_POOL,
    Autoscaler,
    Destination,
    GpuScheduling,
    ModelStore,
    Peer,
    PrometheusSource,
    Registry,
    StorageClaim,
    Toleration,
    pod_placement,
    registered_outputs,
)
from mlstack import autoscaling, catalogue, checkov, quota, rules
from mlstack.clouds import azure, azure_acr_token, azure_api
from mlstack.monitoring import ScrapeBy
from mlstack.problems import Problem, format_problems

# Built-in role "AcrPull" (the same id in every subscription).
ACR_PULL_ROLE_ID = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
# Built-in role "Monitoring Data Reader": what KEDA's identity needs on the Azure Monitor workspace to
# query it ("Assign the Monitoring Data Reader role to the identity for your Azure Monitor workspace",
# MicrosoftDocs/azure-monitor-docs articles/azure-monitor/containers/integrate-keda.md; the id is the
# same in every subscription).
MONITORING_DATA_READER_ROLE_ID = "b0d8363b-8ddd-447d-831f-62ca05bff136"
# What Entra ID exchanges a Kubernetes service account token for (articles/aks/keda-workload-identity.md:
# `az identity federated-credential create ... --audience api://AzureADTokenExchange`).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience, no secret
# The annotation Azure Workload Identity's webhook reads for the client id it puts in a pod's environment.
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
# AKS puts this taint on every node of a Spot pool whether or not it is asked for.
SPOT_TAINT_KEY = "kubernetes.azure.com/scalesetpriority"
SPOT_TAINT_VALUE = "spot"
# The class AKS ships for Azure Files through its CSI driver: ReadWriteMany.
MODEL_STORAGE_CLASS = "azurefile-csi"
# Pinned by digest: a tag can be moved, the digest names these bytes. The digest is the one NVIDIA's
# own GPU Operator pins for v0.17.4 (NVIDIA/gpu-operator, commit bbbd44f "Bump k8s-device-plugin to
# v0.17.4", bundle/manifests/gpu-operator-certified.clusterserviceversion.yaml, released in v25.3.3 and
# v25.3.4). Beware the Renovate-written sha256:964847cc…, which several public manifests pin as "the"
# plugin: it is the old v0.9.0/latest image. To move on: take the new release's digest from the same
# file at the Operator release that bumps it, or `crane digest nvcr.io/nvidia/k8s-device-plugin:vX.Y.Z`.
DEVICE_PLUGIN_IMAGE = (
    "nvcr.io/nvidia/k8s-device-plugin:v0.17.4@sha256:3c54348fe5a57e5700e7d8068e7531d2ef2d5f3ccb70c8f6bac0953432527abd"
)
# Where the kubelet listens for device plugins to register.
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
# Azure CNI Powered by Cilium enforces NetworkPolicy: "We recommend using Cilium, which provides robust
# support for Kubernetes-native policies" (https://learn.microsoft.com/azure/aks/use-network-policies);
# Azure Network Policy Manager leaves Linux nodes on 2028-09-30 and kubenet on 2028-03-31 (same docs).
# Cilium needs Azure CNI (overlay: pods take addresses from a private range, not the VNet), and
# networkPolicy "cilium" requires networkDataplane "cilium" (the API's NetworkPolicy enum). All four are
# set, none left to a default that moves with the Kubernetes version (Azure/azure-rest-api-specs#30844).
# pulumi-azure-native replaces the cluster when any of them changes (provider/pkg/gen/replacement.go,
# forceNewMap: "only along a specific one-way migration ... Force-new to stay conservative"), so on a
# cluster made before 2026-11 `pulumi up` replaces it; docs/aks.md says how to migrate in place instead.
NETWORK_PROFILE = containerservice.ContainerServiceNetworkProfileArgs(
    network_plugin=containerservice.NetworkPlugin.AZURE,
    network_plugin_mode=containerservice.NetworkPluginMode.OVERLAY,
    network_dataplane=containerservice.NetworkDataplane.CILIUM,
    network_policy=containerservice.NetworkPolicy.CILIUM,
)
# Azure Monitor managed Prometheus: its replica set (service and pod-annotation scrapes) and its node
# DaemonSet, both in kube-system (Azure/prometheus-collector, otelcollector/deploy/addon-chart/
# azure-monitor-metrics-addon/templates: pod labels rsName: ama-metrics and dsName: ama-metrics-node).
METRICS_SCRAPERS = (Peer("kube-system", {"rsName": "ama-metrics"}), Peer("kube-system", {"dsName": "ama-metrics-node"}))
# Azure Monitor managed Prometheus, as AKS's own add-on templates enable it (Azure/prometheus-collector,
# AddonArmTemplate/FullAzureMonitorMetricsProfile.json and AddonTerraformTemplate/main.tf): an Azure Monitor
# workspace stores the metrics; a data collection endpoint and a Linux data collection rule whose
# prometheusForwarder source sends the stream Microsoft-PrometheusMetrics to that workspace; the rule
# associated with the cluster; and the cluster's azureMonitorProfile.metrics enabled, which deploys the
# ama-metrics pods (METRICS_SCRAPERS) and the azmonitoring.coreos.com PodMonitor CRD they read
# (https://learn.microsoft.com/azure/azure-monitor/containers/prometheus-metrics-scrape-crd).
PROMETHEUS_STREAM = "Microsoft-PrometheusMetrics"
PROMETHEUS_DESTINATION = "MonitoringAccount1"  # the name the templates give the workspace in the rule
# AKS pool names: lower-case letters and digits, at most 12.
SYSTEM_POOL_NAME = SYSTEM_POOL
GPU_POOL_NAME = GPU_POOL


class ClusterIdentity(Protocol):
    """What the program reads of a managed identity in the cluster's identity profile."""

    @property
    def object_id(self) -> str | None: ...


class AksError(pulumi.RunError):
    """The AKS target cannot be built with these arguments."""


@dataclass(frozen=True)
class AksGpuClusterArgs:
    location: str
    # A minor ("1.36"; AKS picks its newest patch), or None: the location's default for a new cluster.
    kubernetes_version: str | None
    upgrade_channel: str
    system_vm_size: str
    system_node_count: int
    gpu_vm_size: str
    gpu_min_nodes: int
    gpu_max_nodes: int
    gpu_spot: bool
    spot_max_price: float = -1.0  # -1: up to the on-demand price
    acr_sku: str = "Basic"
    acr_admin_user: bool = False
    device_plugin_image: str = DEVICE_PLUGIN_IMAGE
    quota_check: bool = True  # read the subscription's quotas in the location before creating anything


# --- pure builders -------------------------------------------------------------


def gpu_pool_taints(spot: bool) -> tuple[Toleration, ...]:
    """Every taint the GPU pool's nodes carry, as the tolerations a pod needs to land there."""
    # "NoSchedule" is GPU_TAINT_EFFECT, spelled as the literal the Toleration type wants.
    taints = [Toleration(GPU_TAINT_KEY, "Equal", "NoSchedule", GPU_TAINT_VALUE)]
    if spot:
        taints.append(Toleration(SPOT_TAINT_KEY, "Equal", "NoSchedule", SPOT_TAINT_VALUE))
    return tuple(taints)


def node_taint(t: Toleration) -> str:
    """AKS's ``key=value:Effect`` form of a taint."""
    return f"{t.key}={t.value}:{t.effect}"


def gpu_scheduling(args: AksGpuClusterArgs) -> GpuScheduling:
    size = azure.azure_gpu_size(args.gpu_vm_size)
    return GpuScheduling(
        node_selector={POOL_LABEL_KEY: GPU_POOL},
        tolerations=gpu_pool_taints(args.gpu_spot),
        gpus_per_node=size.gpus,
        max_nodes=args.gpu_max_nodes,
        gpu_model=size.gpu_model,
        node_sizes=azure.azure_sizes_with(size.gpu_model),
    )


def registry_name(prefix: str, suffix: str) -> str:
    """An ACR name: 5-50 letters and digits, globally unique thanks to the random suffix."""
    letters = re.sub(r"[^a-z0-9]", "", prefix.lower())[: 50 - len(suffix)]
    return f"{letters or 'mlstack'}{suffix}"


def role_definition_id(subscription_id: str, role_id: str = ACR_PULL_ROLE_ID) -> str:
    """The full id of a built-in role definition, as a role assignment takes it."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"


def kubernetes_version(args: AksGpuClusterArgs, subscription_id: str, token: str) -> str:
    """The minor the cluster runs: the pinned one once the location confirms it offers it, else its default.

    During preview and up AKS's own list for the location is read (mlstack.clouds.azure_api, with the deployer's
    Entra ID token); a pinned minor it does not offer without long-term support stops the run. When
    the list cannot be read, the catalogue's dates, which the config already applied, stand, and the
    run says so.
    """
    pinned = args.kubernetes_version
    try:
        offered = azure_api.aks_versions(subscription_id, args.location, token)
    except azure_api.ArmError as e:
        pulumi.log.warn(
            f"could not read the Kubernetes versions AKS offers in {args.location} ({e}); "
            f"going by mlstack's catalogue, which gives {pinned or azure.AKS_DEFAULT_MINOR}"
        )
        return pinned or azure.AKS_DEFAULT_MINOR
    problems = rules.kubernetes_version_offered(pinned or "", offered.minors, offered.where)
    if problems:
        raise AksError(format_problems("invalid AKS target", problems))
    return pinned or offered.default or azure.AKS_DEFAULT_MINOR


def check_quota(args: AksGpuClusterArgs, subscription_id: str, token: str) -> None:
    """Stop before anything is created when the location's vCPU quotas cannot hold both pools at their largest.

    The subscription's usage and limits (Microsoft.Compute Usage_List, mlstack.quota) against the system
    pool with its upgrade surge and the GPU pool at gpuMaxNodes, on its VM family or, on Spot, the
    low-priority vCPUs. A quota the answer lacks is named but not judged; an answer that cannot be read is
    said and never stops the run (the cloud refuses for itself later).
    """
    where = f"Azure location {args.location}"
    if not args.quota_check:
        pulumi.log.info(f"quota in {where}: not checked (mlstack:quotaCheck is false)")
        return
    needs = azure.needs_azure(
        system_vm_size=args.system_vm_size,
        system_nodes=args.system_node_count,
        gpu_vm_size=args.gpu_vm_size,
        gpu_max_nodes=args.gpu_max_nodes,
        gpu_spot=args.gpu_spot,
    )
    try:
        quotas = azure_api.azure_quotas(subscription_id, args.location, token)
    except azure_api.ArmError as e:
        pulumi.log.warn(f"quota in {where}: not checked, the usages could not be read ({e})")
        return
    fits, report = quota.verdict(needs, quotas, azure.AKS_QUOTA_INCREASE, args.location, subscription_id)
    if not fits:
        raise AksError(f"the AKS target does not fit its quotas; nothing was created.\n{report}")
    pulumi.log.info(f"quota in {where}: enough for both pools at their largest" + (f"\n{report}" if report else ""))


def decode_kubeconfig(encoded: str) -> str:
    return base64.b64decode(encoded).decode("utf-8")


def check_args(args: AksGpuClusterArgs) -> list[Problem]:
    """Every problem with ``args``, by the rules the config loader applies; empty when valid.

    AKS would reject them only after minutes of provisioning.
    """
    return [
        *rules.parsed("azureLocation", args.location, azure.azure_location),
        *rules.parsed("aksSystemVmSize", args.system_vm_size, azure.azure_vm_size),
        *azure.arm_system_pool(args.system_vm_size),
        *rules.parsed("aksGpuVmSize", args.gpu_vm_size, azure.azure_gpu_size),
        *rules.one_of("aksUpgradeChannel", args.upgrade_channel, azure.AKS_UPGRADE_CHANNELS),
        *rules.one_of("acrSku", args.acr_sku, azure.ACR_SKUS),
        *rules.system_node_count(args.system_node_count),
        *rules.gpu_pool_size(args.gpu_min_nodes, args.gpu_max_nodes),
        *azure.spot_max_price(args.spot_max_price),
    ]


# --- the component -------------------------------------------------------------


class AksGpuCluster(pulumi.ComponentResource):
    """A ClusterTarget on AKS: system pool, GPU pool from zero, ACR, device plugin, Azure Files."""

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
    resource_group_name: pulumi.Output[str]
    metrics_workspace_id: pulumi.Output[str]
    registry_login_server: pulumi.Output[str]
    get_credentials: pulumi.Output[str]
    autoscaler: Autoscaler

    def __init__(self, name: str, args: AksGpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        problems = check_args(args)
        if problems:
            raise AksError(format_problems("invalid AKS target", problems))
        # Asked before anything is registered: a version the location does not offer, or quotas too small for
        # the pools at their largest, stop the run here.
        deployer = authorization.get_client_config()
        token = authorization.get_client_token().token
        self.kubernetes_version = kubernetes_version(args, deployer.subscription_id, token)
        check_quota(args, deployer.subscription_id, token)
        super().__init__("mlstack:aks:AksGpuCluster", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)

        group = resources.ResourceGroup(f"{name}-rg", location=args.location, opts=self._child)
        cluster = self._cluster(group)
        gpu_pool = self._gpu_pool(group, cluster)
        workspace = self._managed_prometheus(group, cluster)
        self.metrics_workspace_id = workspace.id
        acr = self._registry(group)
        acr_pull = self._acr_pull(cluster, acr, deployer.subscription_id)
        self._kubernetes(group, cluster, depends_on=[acr_pull, gpu_pool])
        self.autoscaler = self._keda(group, cluster, workspace, deployer.subscription_id)

        self.gpu = gpu_scheduling(args)
        self._device_plugin(self.gpu)
        username, password = _push_credentials(args, acr, group, (deployer.tenant_id, token), self)
        self.registry = Registry(server=acr.login_server, username=username, password=password)
        # ReadWriteMany: the Job writes the model on a GPU node, the servers read it elsewhere.
        self.model_store = ModelStore(
            claim=StorageClaim(access_mode="ReadWriteMany", storage_class=MODEL_STORAGE_CLASS)
        )
        self.external_load_balancer = azure.CLOUD.external_load_balancer
        self.metrics_scrapers = METRICS_SCRAPERS
        self.scrape_by = azure.AKS_SCRAPE_BY
        self.pod_egress: tuple[Destination, ...] = ()  # the cluster's DNS pods answer every lookup
        self.kube_context = None  # the kubeconfig names its own context
        self.cluster_name = cluster.name
        self.resource_group_name = group.name
        self.registry_login_server = acr.login_server
        self.get_credentials = pulumi.Output.concat(
            "az aks get-credentials --resource-group ", group.name, " --name ", cluster.name
        )
        self.register_outputs(registered_outputs(self))

    @property
    def stack_outputs(self) -> dict[str, pulumi.Input[str]]:
        """What an AKS user needs next (push images, kubectl): the stack exports them, the component registers them."""
        return {
            "clusterName": self.cluster_name,
            "resourceGroup": self.resource_group_name,
            "registryLoginServer": self.registry_login_server,
            "getCredentials": self.get_credentials,
            "metricsWorkspaceId": self.metrics_workspace_id,
        }

    def _cluster(self, group: resources.ResourceGroup) -> containerservice.ManagedCluster:
        args = self._args
        return containerservice.ManagedCluster(
            f"{self._name}-cluster",
            resource_group_name=group.name,
            location=args.location,
            dns_prefix=self._name,
            # None: AKS's default for a new cluster, the one kubernetes_version() read; later minors come
            # through the upgrade channel, never from a changed default.
            kubernetes_version=args.kubernetes_version,
            enable_rbac=True,
            identity=containerservice.ManagedClusterIdentityArgs(
                type=containerservice.ResourceIdentityType.SYSTEM_ASSIGNED
            ),
            # Workload identity lets pods reach Azure services without stored keys.
            oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
            security_profile=containerservice.ManagedClusterSecurityProfileArgs(
                workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=True)
            ),
            auto_upgrade_profile=containerservice.ManagedClusterAutoUpgradeProfileArgs(
                upgrade_channel=args.upgrade_channel
            ),
            # Enforces the workloads' NetworkPolicies (NETWORK_PROFILE says why this one).
            network_profile=NETWORK_PROFILE,
            # The managed KEDA add-on, which scales the servers (mlstack/autoscaling.py). Enabled with workload
            # identity in the same request: "If you plan to use workload identity on AKS Standard, enable
            # workload identity before enabling the KEDA add-on" (articles/aks/keda-about.md); a cluster
            # created with both has its KEDA operator start with the webhook already in place.
            workload_auto_scaler_profile=containerservice.ManagedClusterWorkloadAutoScalerProfileArgs(
                keda=containerservice.ManagedClusterWorkloadAutoScalerProfileKedaArgs(enabled=True)
            ),
            # Azure Monitor managed Prometheus (PROMETHEUS_STREAM says what else it needs).
            azure_monitor_profile=containerservice.ManagedClusterAzureMonitorProfileArgs(
                metrics=containerservice.ManagedClusterAzureMonitorProfileMetricsArgs(enabled=True)
            ),
            # Only the system pool lives inline: a pool both inline and a separate
            # AgentPool would be fought over by the two resources on every update.
            agent_pool_profiles=[
                containerservice.ManagedClusterAgentPoolProfileArgs(
                    name=SYSTEM_POOL_NAME,
                    mode=containerservice.AgentPoolMode.SYSTEM,
                    vm_size=args.system_vm_size,
                    count=args.system_node_count,
                    os_type=containerservice.OSType.LINUX,
                    type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                )
            ],
            opts=self._child,
        )

    def _managed_prometheus(
        self, group: resources.ResourceGroup, cluster: containerservice.ManagedCluster
    ) -> monitor.AzureMonitorWorkspace:
        """The workspace the cluster's Prometheus metrics go to, and the rule that sends them."""
        location = self._args.location
        workspace = monitor.AzureMonitorWorkspace(
            f"{self._name}-metrics", resource_group_name=group.name, location=location, opts=self._child
        )
        endpoint = monitor.DataCollectionEndpoint(
            f"{self._name}-metrics-endpoint",
            resource_group_name=group.name,
            location=location,
            kind="Linux",
            opts=self._child,
        )
        rule = monitor.DataCollectionRule(
            f"{self._name}-metrics-rule",
            resource_group_name=group.name,
            location=location,
            kind="Linux",
            data_collection_endpoint_id=endpoint.id,
            data_sources=monitor.DataCollectionRuleDataSourcesArgs(
                prometheus_forwarder=[
                    monitor.PrometheusForwarderDataSourceArgs(name="PrometheusDataSource", streams=[PROMETHEUS_STREAM])
                ]
            ),
            destinations=monitor.DataCollectionRuleDestinationsArgs(
                monitoring_accounts=[
                    monitor.MonitoringAccountDestinationArgs(
                        account_resource_id=workspace.id, name=PROMETHEUS_DESTINATION
                    )
                ]
            ),
            data_flows=[monitor.DataFlowArgs(streams=[PROMETHEUS_STREAM], destinations=[PROMETHEUS_DESTINATION])],
            description="Azure Monitor managed Prometheus of the AKS cluster (mlstack)",
            opts=self._child,
        )
        monitor.DataCollectionRuleAssociation(
            f"{self._name}-metrics-association",
            resource_uri=cluster.id,
            data_collection_rule_id=rule.id,
            description="Sends the cluster's Prometheus metrics through its rule; deleting it stops collection.",
            opts=self._child,
        )
        return workspace

    def _keda(
        self,
        group: resources.ResourceGroup,
        cluster: containerservice.ManagedCluster,
        workspace: monitor.AzureMonitorWorkspace,
        subscription_id: str,
    ) -> Autoscaler:
        """The add-on's KEDA, allowed to query the workspace with an identity of its own.

        As Microsoft documents it (articles/aks/keda-workload-identity.md, and
        articles/aks/autoscale-gpu-workloads-with-keda.md for managed Prometheus): a user-assigned
        identity, federated with the add-on operator's service account (kube-system/keda-operator),
        granted Monitoring Data Reader on the workspace, named in each TriggerAuthentication
        (``identityId``: "The keda-operator Pods use the identityId to authenticate against Azure
        resources when evaluating scaling triggers") and on the service account, the doc's other step.
        """
        identity = managedidentity.UserAssignedIdentity(
            f"{self._name}-keda", resource_group_name=group.name, location=self._args.location, opts=self._child
        )
        issuer = cluster.oidc_issuer_profile.apply(lambda profile: profile.issuer_url if profile else "")
        federation = managedidentity.FederatedIdentityCredential(
            f"{self._name}-keda-operator",
            resource_group_name=group.name,
            resource_name_=identity.name,
            issuer=issuer,
            subject=f"system:serviceaccount:{azure.AKS_KEDA_NAMESPACE}:{autoscaling.KEDA_OPERATOR_ACCOUNT}",
            audiences=[TOKEN_EXCHANGE_AUDIENCE],
            opts=self._child,
        )
        reader = authorization.RoleAssignment(
            f"{self._name}-keda-metrics-reader",
            principal_id=identity.principal_id,
            # As for AcrPull: a new identity may not have replicated in Entra ID yet.
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=role_definition_id(subscription_id, MONITORING_DATA_READER_ROLE_ID),
            scope=workspace.id,
            opts=self._child,
        )
        # The add-on's own account, annotated as the doc's `kubectl annotate serviceaccount keda-operator
        # azure.workload.identity/client-id=...` does (added after Azure/AKS#5243). A patch: the add-on owns
        # the account; this stack owns only the one annotation.
        account = k8s.core.v1.ServiceAccountPatch(
            f"{self._name}-keda-operator-identity",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=autoscaling.KEDA_OPERATOR_ACCOUNT,
                namespace=azure.AKS_KEDA_NAMESPACE,
                annotations={WORKLOAD_IDENTITY_CLIENT_ID: identity.client_id},
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        endpoint = workspace.metrics.apply(lambda metrics: metrics.prometheus_query_endpoint.rstrip("/"))
        # The minors this cluster may reach through its upgrade channel: the add-on's KEDA follows each.
        now = catalogue.minor_key(self.kubernetes_version)
        later = [m for m in azure.CLOUD.offered_minors(catalogue.today()) if catalogue.minor_key(m) >= now]
        return Autoscaler(
            source=PrometheusSource(
                server_address=endpoint,
                pod_identity={"provider": "azure-workload", "identityId": identity.client_id},
            ),
            keda_versions=azure.aks_keda_versions(tuple(later or [self.kubernetes_version])),
            ready=(federation, reader, account),
        )

    def _device_plugin(self, gpu: GpuScheduling) -> None:
        """NVIDIA's device plugin on the GPU nodes, fenced off the network it never uses."""
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        isolation = k8s.networking.v1.NetworkPolicy(
            f"{self._name}-nvidia-device-plugin-network",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="nvidia-device-plugin", namespace=DEVICE_PLUGIN_NAMESPACE, labels=DEVICE_PLUGIN_LABELS
            ),
            spec=network.isolated(DEVICE_PLUGIN_MATCH),
            opts=opts,
        )
        k8s.apps.v1.DaemonSet(
            f"{self._name}-nvidia-device-plugin",
            metadata=device_plugin_meta(),
            spec=device_plugin_spec(self._args.device_plugin_image, gpu),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[isolation])),
        )

    def _gpu_pool(
        self, group: resources.ResourceGroup, cluster: containerservice.ManagedCluster
    ) -> containerservice.AgentPool:
        args = self._args
        return containerservice.AgentPool(
            f"{self._name}-gpu-pool",
            agent_pool_name=GPU_POOL_NAME,
            resource_group_name=group.name,
            resource_name_=cluster.name,
            mode=containerservice.AgentPoolMode.USER,
            vm_size=args.gpu_vm_size,
            orchestrator_version=args.kubernetes_version,  # None: the control plane's
            os_type=containerservice.OSType.LINUX,
            type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
            # From zero: a GPU node is paid for only while something asks for a GPU.
            enable_auto_scaling=True,
            count=args.gpu_min_nodes,
            min_count=args.gpu_min_nodes,
            max_count=args.gpu_max_nodes,
            node_labels={POOL_LABEL_KEY: GPU_POOL},
            # The Spot taint is listed too: AKS adds it to every Spot pool, and leaving
            # it out would show a diff on every preview.
            node_taints=[node_taint(t) for t in gpu_pool_taints(args.gpu_spot)],
            # AKS installs the NVIDIA driver on the nodes; the device plugin is ours.
            gpu_profile=containerservice.GPUProfileArgs(driver=containerservice.GPUDriver.INSTALL),
            # Spot: far cheaper, evicted when Azure needs the capacity back. Delete, not
            # Deallocate: a deallocated Spot node still holds quota and disks.
            scale_set_priority=(
                containerservice.ScaleSetPriority.SPOT if args.gpu_spot else containerservice.ScaleSetPriority.REGULAR
            ),
            scale_set_eviction_policy=(containerservice.ScaleSetEvictionPolicy.DELETE if args.gpu_spot else None),
            spot_max_price=args.spot_max_price if args.gpu_spot else None,
            # The autoscaler owns the node count once the pool exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
        )

    def _registry(self, group: resources.ResourceGroup) -> containerregistry.Registry:
        args, name = self._args, self._name
        suffix = random.RandomString(f"{name}-registry-suffix", length=8, special=False, upper=False, opts=self._child)
        return containerregistry.Registry(
            f"{name}-registry",
            registry_name=suffix.result.apply(lambda s: registry_name(name, s)),
            resource_group_name=group.name,
            location=args.location,
            sku=containerregistry.SkuArgs(name=args.acr_sku),
            # Pushes authenticate with the deployer's Entra ID token, exchanged by the
            # program for an ACR refresh token (acr_refresh_token), unless asked otherwise.
            admin_user_enabled=args.acr_admin_user,
            opts=self._child,
        )

    def _acr_pull(
        self,
        cluster: containerservice.ManagedCluster,
        acr: containerregistry.Registry,
        subscription_id: str,
    ) -> authorization.RoleAssignment:
        return authorization.RoleAssignment(
            f"{self._name}-acr-pull",
            principal_id=cluster.identity_profile.apply(_kubelet_object_id),
            # Set explicitly: Azure otherwise looks the principal up in Entra ID, which
            # fails for a moments-old identity that has not replicated yet.
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=role_definition_id(subscription_id),
            scope=acr.id,
            opts=self._child,
        )

    def _kubernetes(
        self,
        group: resources.ResourceGroup,
        cluster: containerservice.ManagedCluster,
        depends_on: list[pulumi.Resource],
    ) -> None:
        """The kubeconfig and the provider the workloads use; set as ``kubeconfig`` and ``provider``."""
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=group.name,
            resource_name=cluster.name,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda configs: decode_kubeconfig(configs[0].value))
        )
        self.provider = k8s.Provider(
            f"{self._name}-k8s",
            kubeconfig=self.kubeconfig,
            # Nothing runs in the cluster before the kubelet may pull from the registry
            # (the Job's image pull would otherwise race the AcrPull assignment) and the
            # GPU pool exists. Azure adds that a new role assignment "can take up to 10
            # minutes" to take effect (learn.microsoft.com/azure/role-based-access-control/
            # troubleshooting): the kubelet retries a refused pull with back-off meanwhile.
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )


def _kubelet_object_id(profile: Mapping[str, ClusterIdentity] | None) -> str:
    identity = (profile or {}).get("kubeletidentity")
    if identity is None or not identity.object_id:
        raise AksError("the AKS cluster reports no kubelet identity; it cannot be granted AcrPull")
    return identity.object_id


def _push_credentials(
    args: AksGpuClusterArgs,
    acr: containerregistry.Registry,
    group: resources.ResourceGroup,
    deployer: tuple[str, str],
    parent: pulumi.Resource,
) -> tuple[pulumi.Output[str] | str, pulumi.Output[str]]:
    """Username and password the image build pushes with: obtained here, never the user's docker login.

    Admin user on: its credentials. Otherwise the Entra ID tokens of whoever runs
    `pulumi up` are exchanged for an ACR refresh token: a registry created a
    minute earlier takes it at once, where `az acr login` could not have run.
    The ACR-audience token goes first, as the registry takes it whatever its
    azureADAuthenticationAsArmPolicy; the ARM-audience one is the fallback: the one the target
    already holds (``deployer``: the tenant and that token), obtained before anything was created.
    """
    tenant_id, arm_token = deployer
    invoke_opts = pulumi.InvokeOutputOptions(parent=parent)
    if args.acr_admin_user:
        creds = containerregistry.list_registry_credentials_output(
            registry_name=acr.name, resource_group_name=group.name, opts=invoke_opts
        )
        return (
            creds.username.apply(lambda u: u or ""),
            pulumi.Output.secret(creds.passwords.apply(lambda p: (p or [])[0].value or "")),
        )

    def client_token(audience: str, endpoint: str) -> azure_acr_token.AudienceToken:
        # The plain invoke, not get_client_token_output: the SDK fails the whole program on any
        # Output that errs, and a token the provider cannot get (a cloud or tenant without the
        # ACR audience) must instead reach the exchange as not obtained, to fall back and be named.
        try:
            token = authorization.get_client_token(endpoint=endpoint, opts=pulumi.InvokeOptions(parent=parent)).token
        except Exception as e:  # the invoke's failure, whatever its type, is the reason
            return azure_acr_token.AudienceToken(audience, "", unavailable=str(e))
        return azure_acr_token.AudienceToken(audience, token)

    tokens = [
        pulumi.Output.secret(client_token(azure_acr_token.ACR_AUDIENCE, azure_acr_token.ACR_AUDIENCE)),
        pulumi.Output.secret(azure_acr_token.AudienceToken(azure_acr_token.ARM_AUDIENCE, arm_token)),
    ]
    refresh_token = pulumi.Output.all(acr.login_server, tenant_id, *tokens).apply(
        lambda v: azure_acr_token.exchange(str(v[0]), str(v[1]), v[2:])
    )
    return azure_acr_token.USERNAME, pulumi.Output.secret(refresh_token)


DEVICE_PLUGIN_MATCH = {"app.kubernetes.io/name": "nvidia-device-plugin"}
DEVICE_PLUGIN_LABELS = {**DEVICE_PLUGIN_MATCH, "app.kubernetes.io/part-of": "mlstack"}
# Beside the cluster's own node agents: a hostPath pod has no place in a namespace that enforces a
# Pod Security level, and kube-system enforces none.
DEVICE_PLUGIN_NAMESPACE = "kube-system"


# What Checkov finds on the plugin, and why it stays so (mlstack/checkov.py), on the DaemonSet.
_DEVICE_PLUGIN_ROOT = (
    "runs as root: the plugin creates its socket in the kubelet's root-owned device-plugin directory (see "
    "mlstack.io/policy-exempt-reason), without escalation, capabilities, token or network"
)
# NVIDIA's own manifests declare no probe (deployments/static/nvidia-device-plugin.yml and the Helm chart's
# templates/daemonset-device-plugin.yml, NVIDIA/k8s-device-plugin): the plugin opens no port, only a gRPC
# unix socket under the kubelet's device-plugin directory, which the kubelet dials.
_DEVICE_PLUGIN_NO_PROBE = (
    "no probe: the plugin opens no port, only the gRPC socket the kubelet dials, and NVIDIA's own "
    "manifests declare none"
)
DEVICE_PLUGIN_CHECKOV_SKIPS = {
    "CKV_K8S_8": _DEVICE_PLUGIN_NO_PROBE,
    "CKV_K8S_9": _DEVICE_PLUGIN_NO_PROBE,
    # As for the trainer (components/workloads.py, TRAINER_CHECKOV_SKIPS): a CPU limit is a CFS quota that
    # throttles on idle CPUs, here the plugin's answers to the kubelet when a GPU pod starts.
    "CKV_K8S_11": (
        "no CPU limit: a CFS quota would throttle the plugin's answers to the kubelet as GPU pods start, even "
        "on idle CPUs; its CPU request is its share under contention, and its memory is limited"
    ),
    "CKV_K8S_23": _DEVICE_PLUGIN_ROOT,
    "CKV_K8S_40": _DEVICE_PLUGIN_ROOT,
}


def device_plugin_meta() -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name="nvidia-device-plugin",
        namespace=DEVICE_PLUGIN_NAMESPACE,
        labels=DEVICE_PLUGIN_LABELS,
        # Exemptions from the policy pack (policy/rules.py) and from Checkov, said where reviewers see them.
        annotations={
            "mlstack.io/policy-exempt": "non-root,pod-security-restricted",
            "mlstack.io/policy-exempt-reason": (
                "the plugin creates its socket in the kubelet's device-plugin directory, a root-owned "
                "hostPath (kubelet: os.MkdirAll(socketDir, 0750)), so it runs as root with a hostPath "
                "volume, which no Pod Security level but privileged allows; it runs in kube-system, "
                "without escalation, capabilities, token or network, on a read-only root filesystem"
            ),
            **checkov.skip_annotations(DEVICE_PLUGIN_CHECKOV_SKIPS),
        },
    )


def device_plugin_security() -> k8s.core.v1.SecurityContextArgs:
    """Root (see device_plugin_meta) and nothing more: no escalation, no capability, read-only root.

    With default flags the plugin writes only its socket, in the device-plugin hostPath: CDI specs
    only with a cdi-* device-list strategy (internal/cdi/cdi.go), MPS files only with the MPS sharing
    strategy (internal/plugin/mps.go), a config file only read, and klog logs to stderr
    (NVIDIA/k8s-device-plugin v0.17.4). So its root filesystem can be read-only.

    What writes into it at start is NVIDIA's runtime, not the plugin: the image sets
    NVIDIA_VISIBLE_DEVICES=all (deployments/container/Dockerfile), and on AKS's GPU nodes containerd's
    default runtime is nvidia-container-runtime (Azure/AgentBaker, containerd templates
    `default_runtime_name = "nvidia-container-runtime"`), whose default mode resolves to jit-cdi from
    toolkit 1.18.0 (aks-gpu pins 1.19.0): createContainer hooks such as update-ldcache write
    /etc/ld.so.cache into the container's root (internal/ldconfig/ldconfig.go). They still run on a
    read-only root: containerd only sets the OCI spec's root.readonly (internal/cri/server/
    container_create.go, oci.WithRootFSReadonly), and runc runs createContainer hooks while preparing
    the root and makes it read-only only afterwards (libcontainer/rootfs_linux.go, prepareRootfs then
    finalizeRootfs; runc 1.4.3 is the AKS node image's). What does break them is a read-only mount
    where a hook writes: toolkit 1.20.0's update-application-profile hook aborted every container
    with /etc/nvidia mounted read-only, device plugins included (NVIDIA/nvidia-container-toolkit#2026,
    fixed by #2028). So no GPU container mounts anything there (catalogue.NVIDIA_HOOK_PATHS, guarded by
    tests/stacks/test_gpu_containers.py).
    """
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=True,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


# AKS runs a device plugin of its own (the systemd unit nvidia-device-plugin, from the node image) only on
# fully managed GPU nodes: AgentBaker starts it when the VM carries the EnableManagedGPUExperience tag or the
# pool is made with gpuProfile.nvidia.managementMode Managed (Azure/AgentBaker cse_main.sh and cse_config.sh,
# 2026-08; the older ENABLE_GPU_DEVICE_PLUGIN_IF_NEEDED switch has been read by nothing since commit
# 3ffd2330, 2025-10-10), a preview that pulumi-azure-native's GPUProfile does not offer. The pool here asks
# only for the driver ("Driver only": "AKS doesn't install a device plugin ... No nvidia.com/gpu resource is
# advertised until you deploy a device plugin", learn.microsoft.com/azure/aks/aks-managed-gpu-nodes), so ours
# is the one. On a node that is managed all the same, AKS sets this label (cse_config.sh,
# addKubeletNodeLabel; the docs' "kubernetes.azure.com/dcgm-exporter=enabled node label"), and ours stays off
# it: one plugin per node, never two registering nvidia.com/gpu.
MANAGED_GPU_NODE_LABEL = "kubernetes.azure.com/dcgm-exporter"
# The VM tag that turns AKS's own plugin on (AgentBaker cse_helpers.sh, get_imds_vm_tag_value); the pool never has it.
MANAGED_GPU_TAG = "EnableManagedGPUExperience"


def device_plugin_affinity() -> k8s.core.v1.AffinityArgs:
    """Only on GPU nodes where AKS runs no plugin of its own (MANAGED_GPU_NODE_LABEL)."""
    return k8s.core.v1.AffinityArgs(
        node_affinity=k8s.core.v1.NodeAffinityArgs(
            required_during_scheduling_ignored_during_execution=k8s.core.v1.NodeSelectorArgs(
                node_selector_terms=[
                    k8s.core.v1.NodeSelectorTermArgs(
                        match_expressions=[
                            k8s.core.v1.NodeSelectorRequirementArgs(key=MANAGED_GPU_NODE_LABEL, operator="DoesNotExist")
                        ]
                    )
                ]
            )
        )
    )


def device_plugin_spec(image: str, scheduling: GpuScheduling) -> k8s.apps.v1.DaemonSetSpecArgs:
    """NVIDIA's device plugin, on the GPU nodes only: it advertises nvidia.com/gpu there."""
    placement = pod_placement(scheduling)
    return k8s.apps.v1.DaemonSetSpecArgs(
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=DEVICE_PLUGIN_MATCH),
        update_strategy=k8s.apps.v1.DaemonSetUpdateStrategyArgs(type="RollingUpdate"),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=DEVICE_PLUGIN_MATCH),
            spec=k8s.core.v1.PodSpecArgs(
                node_selector=placement.node_selector,
                tolerations=placement.tolerations,
                affinity=device_plugin_affinity(),
                # Evicting it under node pressure would take every GPU off the node.
                priority_class_name="system-node-critical",
                # The plugin alone never calls the Kubernetes API: client-go is used only by its
                # feature discovery and config manager (NVIDIA/k8s-device-plugin v0.17.4,
                # internal/flags/kubeclient.go, cmd/config-manager), and NVIDIA's chart makes a
                # ServiceAccount only for those. No token to steal.
                automount_service_account_token=False,
                security_context=k8s.core.v1.PodSecurityContextArgs(
                    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
                ),
                containers=[
                    k8s.core.v1.ContainerArgs(
                        name="nvidia-device-plugin",
                        image=image,
                        # Keep running (and retrying) while the AKS driver install finishes.
                        env=[k8s.core.v1.EnvVarArgs(name="FAIL_ON_INIT_ERROR", value="false")],
                        resources=k8s.core.v1.ResourceRequirementsArgs(
                            requests={"cpu": "10m", "memory": "32Mi"},
                            limits={"memory": "128Mi"},
                        ),
                        security_context=device_plugin_security(),
                        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="device-plugin", mount_path=DEVICE_PLUGIN_DIR)],
                    )
                ],
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name="device-plugin",
                        host_path=k8s.core.v1.HostPathVolumeSourceArgs(path=DEVICE_PLUGIN_DIR, type="Directory"),
                    )
                ],
            ),
        ),
    )
