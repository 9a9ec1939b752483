"""Config to components: the one place that maps the stack's keys onto each component's Args.

``__main__.py`` only calls these in order. A target's module is imported in
its own branch, so a stack loads the SDK of its cloud and no other.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, assert_never

import pulumi

from components.image import APP_CONTEXT, AppImage, AppImageArgs
from components.target import ClusterTarget
from components.workloads import MlWorkloads, MlWorkloadsArgs, ServerCertificate
from mlstack import cost, prices, validate
from mlstack.clouds import azure, azure_prices, gcp, gcp_locations
from stack.config import AzureConfig, GcpConfig, LocalConfig, StackConfig

if TYPE_CHECKING:  # the cloud SDKs load only in the branch of the stack's own cloud
    from components.aks import AksGpuClusterArgs
    from components.gke import GkeGpuClusterArgs

# Component names, part of every child's URN: never change them on a deployed stack.
LOCAL_NAME = "local"
GKE_NAME = "gke"


def build_target(cfg: StackConfig) -> ClusterTarget:
    """The cluster component ``mlstack:cloud`` names."""
    target = cfg.target
    match target:
        case LocalConfig():
            from components.local import LocalCluster, LocalClusterArgs, default_kubeconfig_paths  # noqa: PLC0415

            return LocalCluster(
                LOCAL_NAME,
                LocalClusterArgs(
                    kubeconfig_paths=default_kubeconfig_paths(),
                    metrics_namespace=target.metrics_namespace,
                    scrape_by=target.scrape_by,
                    context=target.kube_context,
                    registry=target.registry,
                    kubernetes_version=cfg.kubernetes_version,
                ),
            )
        case GcpConfig():
            from components.gke import GkeGpuCluster  # noqa: PLC0415 - only a GKE stack loads pulumi_gcp

            return GkeGpuCluster(GKE_NAME, gke_args(cfg, target))
        case AzureConfig():
            from components.aks import AksGpuCluster  # noqa: PLC0415 - only an AKS stack loads pulumi_azure_native

            return AksGpuCluster(cfg.app.app_name, aks_args(cfg, target))
        case _:
            assert_never(target)


def gke_args(cfg: StackConfig, target: GcpConfig) -> GkeGpuClusterArgs:
    from components.gke import GkeGpuClusterArgs  # noqa: PLC0415 - only a GKE stack loads pulumi_gcp

    return GkeGpuClusterArgs(
        project=target.project,
        region=target.region,
        location=target.location,
        kubernetes_version=cfg.kubernetes_version,
        release_channel=target.release_channel,
        deletion_protection=target.deletion_protection,
        system_machine_type=target.system_machine_type,
        system_node_count=target.pools.system_node_count,
        gpu_machine_type=target.gpu_machine_type,
        gpu_type=target.gpu_type,
        gpu_count=target.gpu_count,
        gpu_driver_version=target.gpu_driver_version,
        gpu_min_nodes=target.pools.gpu_min_nodes,
        gpu_max_nodes=target.pools.gpu_max_nodes,
        gpu_spot=target.pools.gpu_spot,
        repository_id=cfg.app.app_name,
        workload_namespace=cfg.app.namespace,
        trainer_service_account=cfg.app.trainer_service_account,
        server_service_account=cfg.app.server_service_account,
        bucket_force_destroy=target.bucket_force_destroy,
        quota_check=target.pools.quota_check,
    )


def aks_args(cfg: StackConfig, target: AzureConfig) -> AksGpuClusterArgs:
    from components.aks import AksGpuClusterArgs  # noqa: PLC0415 - only an AKS stack loads pulumi_azure_native

    return AksGpuClusterArgs(
        location=target.location,
        kubernetes_version=cfg.kubernetes_version,
        upgrade_channel=target.upgrade_channel,
        system_vm_size=target.system_vm_size,
        system_node_count=target.pools.system_node_count,
        gpu_vm_size=target.gpu_vm_size,
        gpu_min_nodes=target.pools.gpu_min_nodes,
        gpu_max_nodes=target.pools.gpu_max_nodes,
        gpu_spot=target.pools.gpu_spot,
        spot_max_price=target.spot_max_price,
        acr_sku=target.acr_sku,
        acr_admin_user=target.acr_admin_user,
        quota_check=target.pools.quota_check,
    )


def app_images(cfg: StackConfig, target: ClusterTarget) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
    """The trainer and server images the pods run: each prebuilt, or built and pushed (no AppImage when
    both are prebuilt). The trainer is built from mlstack:trainerContext, the server from app/.

    Built images take the registry alone from the target (never the cluster),
    so they build while the cluster is being created.
    """
    images = cfg.images
    if images.trainer is not None and images.server is not None:
        return images.trainer, images.server
    built = AppImage(
        cfg.app.app_name,
        AppImageArgs(
            registry=target.registry,
            repository_prefix=cfg.app.app_name,
            platform=images.platform,
            build_cache=images.build_cache,
            torch_index_url=images.trainer_build.index_url,
            trainer_context=images.trainer_context if images.trainer is None else None,
            server_context=APP_CONTEXT if images.server is None else None,
            server_gpu=cfg.serving.gpu,
        ),
    )
    return _either(images.trainer, built.trainer_ref), _either(images.server, built.server_ref)


def _either(prebuilt: str | None, built: pulumi.Output[str] | None) -> pulumi.Input[str]:
    """The prebuilt image, else the one AppImage built (it builds every image that is not prebuilt)."""
    image = prebuilt or built
    if image is None:
        raise pulumi.RunError("an image is neither prebuilt nor built")
    return image


def workloads(
    cfg: StackConfig, target: ClusterTarget, trainer_image: pulumi.Input[str], server_image: pulumi.Input[str]
) -> MlWorkloads:
    return MlWorkloads(
        cfg.app.app_name,
        MlWorkloadsArgs(
            target=target,
            app=cfg.app,
            training=cfg.training,
            serving=cfg.serving,
            trainer_image=trainer_image,
            server_image=server_image,
            basic_auth_username=cfg.basic_auth_username,
            basic_auth_password=cfg.basic_auth_password,
            model_store_size=cfg.model_store_size,
            kubernetes_version=target.kubernetes_version,
            storage_class=cfg.storage_class,
            kube_context=target.kube_context,
            server_certificate=own_certificate(cfg),
        ),
    )


def own_certificate(cfg: StackConfig) -> ServerCertificate | None:
    """The certificate and key from mlstack:tlsCertificate and mlstack:tlsPrivateKey; None: the stack makes its own."""
    if cfg.tls_certificate is None or cfg.tls_private_key is None:
        return None
    return ServerCertificate(certificate=cfg.tls_certificate, private_key=cfg.tls_private_key)


def cost_estimate(cfg: StackConfig) -> cost.Estimate | None:
    """What the cloud stack costs per hour, from the price table (on AKS, Azure's live retail prices first);
    None on a local cluster."""
    store_gib = validate.quantity(cfg.model_store_size) / 2**30
    target = cfg.target
    match target:
        case LocalConfig():
            return None
        case GcpConfig():
            return gcp.estimate_gke(
                region=target.region,
                zonal=target.zone is not None,
                zones=gcp_locations.pool_zone_count(target.region, target.zone),
                system_machine_type=target.system_machine_type,
                system_nodes=target.pools.system_node_count,
                gpu_machine_type=target.gpu_machine_type,
                gpu_type=target.gpu_type,
                gpu_count=target.gpu_count,
                gpu_min_nodes=target.pools.gpu_min_nodes,
                gpu_max_nodes=target.pools.gpu_max_nodes,
                gpu_spot=target.pools.gpu_spot,
                store_size_gib=store_gib,
            )
        case AzureConfig():
            return azure.estimate_aks(
                location=target.location,
                system_vm_size=target.system_vm_size,
                system_nodes=target.pools.system_node_count,
                gpu_vm_size=target.gpu_vm_size,
                gpu_min_nodes=target.pools.gpu_min_nodes,
                gpu_max_nodes=target.pools.gpu_max_nodes,
                gpu_spot=target.pools.gpu_spot,
                store_size_gib=store_gib,
                machine_price=_azure_price,
            )
        case _:
            assert_never(target)


def _azure_price(region: str, vm_size: str, spot: bool) -> Decimal | None:
    """Azure's retail price now (mlstack.clouds.azure_prices), else the table's (mlstack.prices)."""
    live = azure_prices.vm_price(region, vm_size)
    if live is not None:
        return live.spot if spot else live.on_demand
    return prices.hourly(prices.AZURE_VM_HOURLY, region, vm_size, spot)


def stack_outputs(
    cfg: StackConfig,
    target: ClusterTarget,
    workloads: MlWorkloads,
    trainer_image: pulumi.Input[str],
    server_image: pulumi.Input[str],
) -> dict[str, pulumi.Input[Any]]:
    """Everything the stack exports: the target's own, then the app's; secrets stay secret."""
    estimate = cost_estimate(cfg)
    if estimate is not None:
        pulumi.log.info(estimate.line(cfg.training.nodes, cfg.training.deadline_seconds))
    outputs: dict[str, pulumi.Input[Any]] = {
        **target.stack_outputs,
        # The minor the objects were checked against and Pod Security is enforced as of.
        "kubernetesVersion": target.kubernetes_version,
        "url": workloads.url,
        "namespace": workloads.namespace,
        "modelName": workloads.model_name,
        "modelVersion": workloads.model_version,
        "trainerImage": trainer_image,
        "serverImage": server_image,
        "basicAuthUsername": workloads.basic_auth_username,
        "basicAuthPassword": workloads.basic_auth_password,
        "kubeconfig": target.kubeconfig,
    }
    if workloads.ca_certificate is not None:  # the stack's own CA; none with the user's certificate
        outputs["caCertificate"] = workloads.ca_certificate
    if workloads.port_forward:
        outputs["portForward"] = workloads.port_forward
    outputs["curl"] = workloads.curl
    if estimate is not None:  # USD: idle and at maximum scale per hour, and a training run's most
        outputs["costEstimate"] = estimate.outputs(cfg.training.nodes, cfg.training.deadline_seconds)
    return outputs
