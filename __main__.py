"""mlstack: read the stack's config, pick the cluster target, run the ML workloads on it."""

from __future__ import annotations

import pulumi

from components import config
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
    if cfg.cloud == "azure" and cfg.azure is not None:
        from components.aks import AksGpuCluster, AksGpuClusterArgs  # noqa: PLC0415 - only this cloud's SDK

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
    raise config.ConfigError(
        [
            f"mlstack:cloud = {cfg.cloud!r}: this version of mlstack deploys to local and azure; "
            "gcp is coming"
        ]
    )


cfg = config.load()
target, kube_context = build_target(cfg)
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
        trainer_image=cfg.trainer_image,
        server_image=cfg.server_image,
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
pulumi.export("basicAuthUsername", workloads.basic_auth_username)
pulumi.export("basicAuthPassword", workloads.basic_auth_password)
pulumi.export("kubeconfig", target.kubeconfig)
if workloads.port_forward:
    pulumi.export("portForward", workloads.port_forward)
# Ready to paste: the password is fetched by the CLI, never written into the output.
pulumi.export(
    "curl",
    workloads.url.apply(
        lambda url: (
            f"{workloads.port_forward} & " if workloads.port_forward else ""
        ) + (
            f'curl -u "{cfg.basic_auth_username}:$(pulumi stack output basicAuthPassword --show-secrets)" '
            f"-F image=@digit.png {url}/predict"
        )
    ),
)
