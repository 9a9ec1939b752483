"""mlstack: read the stack's config, pick the cluster target, run the ML workloads on it."""

from __future__ import annotations

import pulumi

from components import config
from components.image import AppImage, AppImageArgs
from components.target import ClusterTarget
from components.workloads import AppSettings, MlWorkloads, MlWorkloadsArgs


def build_target(cfg: config.StackConfig) -> tuple[ClusterTarget, str | None]:
    """The cluster component for ``mlstack:cloud``, importing only that cloud's SDK.

    Returns the target and, for a local cluster, the kubeconfig context in use.
    """
    if cfg.cloud == "local":
        from components.local import LocalCluster, LocalClusterArgs, default_kubeconfig_paths

        local = LocalCluster(
            "local",
            LocalClusterArgs(
                kubeconfig_paths=default_kubeconfig_paths(),
                context=cfg.local.kube_context,
                registry=cfg.local.registry,
            ),
        )
        return local, local.context
    if cfg.cloud == "gcp" and cfg.gcp is not None:
        # Imported here so that other clouds never load pulumi_gcp.
        from components.gke import GkeGpuCluster, GkeGpuClusterArgs
        from components.workloads import workload_service_account_name

        gcp, pools = cfg.gcp, cfg.node_pools
        gke = GkeGpuCluster(
            "gke",
            GkeGpuClusterArgs(
                project=gcp.project,
                region=gcp.region,
                location=gcp.location,
                kubernetes_version=cfg.kubernetes_version,
                release_channel=gcp.release_channel,
                deletion_protection=gcp.deletion_protection,
                system_machine_type=gcp.system_machine_type,
                system_node_count=pools.system_node_count,
                gpu_machine_type=gcp.gpu_machine_type,
                gpu_type=gcp.gpu_type,
                gpu_count=gcp.gpu_count,
                gpu_driver_version=gcp.gpu_driver_version,
                gpu_min_nodes=pools.gpu_min_nodes,
                gpu_max_nodes=pools.gpu_max_nodes,
                gpu_spot=pools.gpu_spot,
                repository_id=cfg.app_name,
                workload_namespace=cfg.namespace,
                workload_service_account=workload_service_account_name(cfg.app_name),
                bucket_force_destroy=gcp.bucket_force_destroy,
            ),
        )
        # Exports, not resources: what a GKE user needs next (push images, kubectl).
        pulumi.export("clusterName", gke.cluster_name)
        pulumi.export("location", gke.location)
        pulumi.export("registryUrl", gke.registry_url)
        pulumi.export("modelBucket", gke.bucket_name)
        pulumi.export("getCredentials", gke.get_credentials)
        return gke, None
    if cfg.cloud == "azure" and cfg.azure is not None:
        from components.aks import AksGpuCluster, AksGpuClusterArgs

        azure, pools = cfg.azure, cfg.node_pools
        aks = AksGpuCluster(
            cfg.app_name,
            AksGpuClusterArgs(
                location=azure.location,
                kubernetes_version=cfg.kubernetes_version,
                upgrade_channel=azure.upgrade_channel,
                system_vm_size=azure.system_vm_size,
                system_node_count=pools.system_node_count,
                gpu_vm_size=azure.gpu_vm_size,
                gpu_min_nodes=pools.gpu_min_nodes,
                gpu_max_nodes=pools.gpu_max_nodes,
                gpu_spot=pools.gpu_spot,
                spot_max_price=azure.spot_max_price,
                acr_sku=azure.acr_sku,
                acr_admin_user=azure.acr_admin_user,
            ),
        )
        pulumi.export("clusterName", aks.cluster_name)
        pulumi.export("resourceGroup", aks.resource_group_name)
        pulumi.export("registryLoginServer", aks.registry_login_server)
        pulumi.export("getCredentials", aks.get_credentials)
        return aks, None
    # config.load() guarantees a known cloud with its settings; anything else is a bug here.
    raise config.ConfigError([f"mlstack:cloud = {cfg.cloud!r}: must be one of {', '.join(config.CLOUDS)}"])


def app_images(cfg: config.StackConfig, target: ClusterTarget) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
    """The trainer and server images the pods run: the prebuilt pair, or both built and pushed.

    Built images take the registry alone from the target (never the cluster),
    so they build while the cluster is being created.
    """
    images = cfg.images
    if images.trainer is not None and images.server is not None:
        return images.trainer, images.server
    built = AppImage(
        cfg.app_name,
        AppImageArgs(
            registry=target.registry,
            repository_prefix=cfg.app_name,
            platform=images.platform,
            build_cache=images.build_cache,
            torch_index_url=images.trainer_cuda.index_url,
        ),
    )
    return built.trainer_ref, built.server_ref


cfg = config.load()
target, kube_context = build_target(cfg)
trainer_image, server_image = app_images(cfg, target)
workloads = MlWorkloads(
    cfg.app_name,
    MlWorkloadsArgs(
        target=target,
        app=AppSettings(
            namespace=cfg.namespace,
            app_name=cfg.app_name,
            model_name=cfg.model_name,
            model_labels=cfg.model_labels,
            log_level=cfg.log_level,
        ),
        training=cfg.training,
        serving=cfg.serving,
        trainer_image=trainer_image,
        server_image=server_image,
        basic_auth_username=cfg.basic_auth_username,
        basic_auth_password=cfg.basic_auth_password,
        model_store_size=cfg.model_store_size,
        storage_class=cfg.storage_class,
        kube_context=kube_context,
    ),
)

pulumi.export("url", workloads.url)
pulumi.export("namespace", workloads.namespace)
pulumi.export("modelVersion", workloads.model_version)
pulumi.export("trainerImage", trainer_image)
pulumi.export("serverImage", server_image)
pulumi.export("basicAuthUsername", workloads.basic_auth_username)
pulumi.export("basicAuthPassword", workloads.basic_auth_password)
pulumi.export("kubeconfig", target.kubeconfig)
# Ready to paste: the password is fetched by the CLI, never written into the output.
curl = workloads.url.apply(
    lambda url: (
        f'curl -u "{cfg.basic_auth_username}:$(pulumi stack output basicAuthPassword --show-secrets)" '
        f"-F image=@digit.png {url}/predict"
    )
)
if workloads.port_forward:
    pulumi.export("portForward", workloads.port_forward)
    curl = curl.apply(lambda c: f"({workloads.port_forward} &) && sleep 3 && {c}")
pulumi.export("curl", curl)
