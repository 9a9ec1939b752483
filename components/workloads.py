"""MlWorkloads: everything that runs inside the cluster.

Namespace, the app's ConfigMaps and basic-auth Secret, the model store, the
training Job, then (only once the Job has trained a model that passed its
gate) the serving Deployment, its LoadBalancer Service, autoscaler and
disruption budget.

The pure builders (labels, env, probes, scheduling, the model version) are
module functions so tests can call them without mocks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.capacity import ROLLOUT_MAX_SURGE
from components.config import ServingConfig, TrainingConfig
from components.target import ClusterTarget, GpuScheduling, ModelStore

# The app's interface (DESIGN.md): the server's port and endpoints, the env it reads.
APP_PORT = 8080
PORT_NAME = "http"
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
MODEL_MOUNT = "/models"
LABELS_DIR = "/etc/mlapp"
LABELS_KEY = "labels.txt"
APP_UID = 10001  # the numeric non-root user the app image runs as
GATE_EXIT_CODE = 2  # the trainer's exit code when accuracy is under the gate

MANAGED_BY = "pulumi"
PART_OF = "mlstack"


@dataclass(frozen=True)
class AppSettings:
    namespace: str
    app_name: str
    model_name: str
    model_labels: tuple[str, ...]
    log_level: str


@dataclass(frozen=True)
class MlWorkloadsArgs:
    target: ClusterTarget
    app: AppSettings
    training: TrainingConfig
    serving: ServingConfig
    trainer_image: pulumi.Input[str]
    server_image: pulumi.Input[str]
    basic_auth_username: str
    basic_auth_password: pulumi.Output[str] | None  # None: generate one
    model_store_size: str
    storage_class: str | None = None  # overrides the target's choice
    kube_context: str | None = None  # for the port-forward hint where there is no external IP


class WorkloadsError(pulumi.RunError):
    """The workloads cannot be built on this target with this configuration."""


# --- pure builders -----------------------------------------------------------


def labels(app: AppSettings, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels every object carries."""
    return {
        "app.kubernetes.io/name": app.app_name,
        "app.kubernetes.io/instance": f"{app.app_name}-{app.namespace}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(app: AppSettings, component: str) -> dict[str, str]:
    """The immutable subset of labels a Deployment, Service and PDB select on."""
    full = labels(app, component)
    return {k: full[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")}


def object_meta(
    app: AppSettings,
    namespace: pulumi.Input[str],
    component: str,
    name: str | None = None,
    annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    """Metadata in the app's namespace; without ``name`` the provider auto-names the object.

    An auto-named object gets a random suffix, and a content change creates a
    new object, so the pods that use it roll (ConfigMaps, Secret) or the object
    is replaced whole (the Job, whose template is immutable).
    """
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=labels(app, component),
        annotations=dict(annotations) if annotations else None,
    )


def workload_service_account_name(app_name: str) -> str:
    """The ServiceAccount the Job and the servers run as; a cloud target may grant it access by name."""
    return f"{app_name}-workload"


def model_version(trainer_image: str, training: TrainingConfig) -> str:
    """A version derived from what produced the model: trainer image and training parameters.

    The accuracy gate, retries and deadlines are left out: they decide whether
    a model is accepted, not what it is.
    """
    produced_by = {
        "trainerImage": trainer_image,
        "epochs": training.epochs,
        "batchSize": training.batch_size,
        "learningRate": training.learning_rate,
        "seed": training.seed,
    }
    digest = hashlib.sha256(json.dumps(produced_by, sort_keys=True).encode()).hexdigest()
    return f"v{digest[:12]}"


def app_env(app: AppSettings) -> dict[str, str]:
    """The ConfigMap data both trainer and server read through envFrom."""
    return {
        "MLAPP_PORT": str(APP_PORT),
        "MLAPP_MODEL_NAME": app.model_name,
        "MLAPP_MODEL_DIR": MODEL_MOUNT,
        "MLAPP_LABELS_FILE": f"{LABELS_DIR}/{LABELS_KEY}",
        "MLAPP_LOG_LEVEL": app.log_level,
    }


def labels_file(app: AppSettings) -> str:
    return "".join(f"{label}\n" for label in app.model_labels)


def trainer_args(app: AppSettings, training: TrainingConfig, version: str, gpu: bool) -> list[str]:
    """The trainer's command line. ``--device cuda`` exactly when the pod requests a GPU: the
    trainer then fails, naming the cause, instead of training on the CPU of a GPU node."""
    return [
        "--model-dir", MODEL_MOUNT,
        "--model-name", app.model_name,
        "--version", version,
        "--epochs", str(training.epochs),
        "--batch-size", str(training.batch_size),
        "--learning-rate", repr(training.learning_rate),
        "--seed", str(training.seed),
        "--min-accuracy", repr(training.min_accuracy),
        "--device", "cuda" if gpu else "cpu",
    ]  # fmt: skip


def probes() -> dict[str, k8s.core.v1.ProbeArgs]:
    """Startup and readiness wait for the model; liveness only asks that the process serves."""

    def http(path: str, period: int, failures: int, timeout: int = 2) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=PORT_NAME),
            period_seconds=period,
            failure_threshold=failures,
            timeout_seconds=timeout,
        )

    return {
        # Up to 5 minutes to load a model from a cold network volume.
        "startup": http(READY_PATH, period=5, failures=60),
        "readiness": http(READY_PATH, period=5, failures=2),
        "liveness": http(LIVE_PATH, period=10, failures=3),
    }


def gpu_scheduling(gpu: GpuScheduling | None) -> dict[str, Any]:
    """node_selector and tolerations for a pod on the GPU pool; empty without a GPU."""
    if gpu is None:
        return {}
    return {
        "node_selector": dict(gpu.node_selector),
        "tolerations": [
            k8s.core.v1.TolerationArgs(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
            for t in gpu.tolerations
        ],
    }


def gpu_env(gpu: GpuScheduling | None) -> list[k8s.core.v1.EnvVarArgs]:
    """What a CUDA container needs in its environment on the target's GPU nodes; empty without a GPU."""
    env = gpu.container_env if gpu is not None else {}
    return [k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in sorted(env.items())]


def container_security() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=APP_UID,
        run_as_group=APP_UID,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        privileged=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security() -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=APP_UID,
        run_as_group=APP_UID,
        # Volumes (the model store) become group-writable by the app's group.
        fs_group=APP_UID,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def model_volume(store: ModelStore, claim_name: pulumi.Input[str] | None, read_only: bool) -> k8s.core.v1.VolumeArgs:
    if store.csi is not None:
        return k8s.core.v1.VolumeArgs(
            name="models",
            csi=k8s.core.v1.CSIVolumeSourceArgs(
                driver=store.csi.driver,
                read_only=read_only,
                volume_attributes=dict(store.csi.volume_attributes),
            ),
        )
    if claim_name is None:
        raise WorkloadsError("a model store claim must be created before it is mounted")
    return k8s.core.v1.VolumeArgs(
        name="models",
        persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
            claim_name=claim_name, read_only=read_only
        ),
    )


def scratch_volume() -> k8s.core.v1.VolumeArgs:
    # The root filesystem is read-only; /tmp is the one writable place.
    return k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi"))


def gate_failure_policy() -> k8s.batch.v1.PodFailurePolicyArgs:
    """Fail at once when the accuracy gate says no; do not count evictions as failures.

    Retrying a deterministic run that missed its gate only burns GPU hours,
    while a Spot eviction or node drain (DisruptionTarget) says nothing about
    the training and should not use up ``backoffLimit``.
    """
    return k8s.batch.v1.PodFailurePolicyArgs(
        rules=[
            k8s.batch.v1.PodFailurePolicyRuleArgs(
                action="FailJob",
                on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
                    container_name="trainer", operator="In", values=[GATE_EXIT_CODE]
                ),
            ),
            k8s.batch.v1.PodFailurePolicyRuleArgs(
                action="Ignore",
                on_pod_conditions=[
                    k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(type="DisruptionTarget", status="True")
                ],
            ),
        ]
    )


# --- the component -------------------------------------------------------------


class MlWorkloads(pulumi.ComponentResource):
    """The ML application inside the cluster: train, gate, then serve."""

    namespace: pulumi.Output[str]
    model_version: pulumi.Output[str]
    url: pulumi.Output[str]
    port_forward: str | None
    basic_auth_username: str
    basic_auth_password: pulumi.Output[str]

    def __init__(self, name: str, args: MlWorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _check(args)
        super().__init__("mlstack:workloads:MlWorkloads", name, None, opts)
        app, target = args.app, args.target
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=target.provider)

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app.namespace, labels=labels(app, "namespace")),
            opts=k8s_opts,
        )
        namespace = ns.metadata.name

        def meta(
            component: str, object_name: str | None = None, annotations: Mapping[str, pulumi.Input[str]] | None = None
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return object_meta(app, namespace, component, object_name, annotations)

        store = target.model_store
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=meta(
                "workload", workload_service_account_name(app.app_name), annotations=store.service_account_annotations
            ),
            automount_service_account_token=store.needs_service_account_token,
            opts=k8s_opts,
        )

        env_config = k8s.core.v1.ConfigMap(f"{name}-env", metadata=meta("config"), data=app_env(app), opts=k8s_opts)
        labels_config = k8s.core.v1.ConfigMap(
            f"{name}-labels", metadata=meta("config"), data={LABELS_KEY: labels_file(app)}, opts=k8s_opts
        )

        if args.basic_auth_password is not None:
            password: pulumi.Output[str] = args.basic_auth_password
        else:
            generated = random.RandomPassword(
                f"{name}-basic-auth-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            password = pulumi.Output.secret(generated.result)
        auth_secret = k8s.core.v1.Secret(
            f"{name}-basic-auth",
            metadata=meta("auth"),
            type="kubernetes.io/basic-auth",
            string_data={"username": args.basic_auth_username, "password": password},
            opts=k8s_opts,
        )

        claim_name: pulumi.Output[str] | None = None
        if store.claim is not None:
            claim = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-model-store",
                metadata=meta("model-store", f"{app.app_name}-models"),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=[store.claim.access_mode],
                    storage_class_name=args.storage_class or store.claim.storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": args.model_store_size}),
                ),
                opts=k8s_opts,
            )
            claim_name = claim.metadata.name

        version = pulumi.Output.from_input(args.trainer_image).apply(lambda image: model_version(image, args.training))
        env_from = [
            k8s.core.v1.EnvFromSourceArgs(
                config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=env_config.metadata.name)
            )
        ]
        pod_common = {
            "service_account_name": service_account.metadata.name,
            "automount_service_account_token": store.needs_service_account_token,
            "security_context": pod_security(),
        }

        job = self._training_job(
            name=name, args=args, namespace=namespace, env_from=env_from, pod_common=pod_common,
            version=version, claim_name=claim_name, k8s_opts=k8s_opts,
        )  # fmt: skip
        deployment = self._deployment(
            name=name, args=args, env_from=env_from, pod_common=pod_common, version=version,
            claim_name=claim_name, labels_config=labels_config, auth_secret=auth_secret, namespace=namespace,
            # Roll out only a model that trained and passed its gate; after creation the
            # autoscaler owns the replica count, so an update must not reset it.
            opts=pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[job], ignore_changes=["spec.replicas"]
            ),
        )  # fmt: skip
        service = self._service(name, args, namespace, k8s_opts)

        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-autoscaler",
            metadata=meta("server", f"{app.app_name}-server"),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=deployment.metadata.name
                ),
                min_replicas=args.serving.replicas,
                max_replicas=args.serving.max_replicas,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=k8s.autoscaling.v2.MetricTargetArgs(
                                type="Utilization", average_utilization=args.serving.target_cpu_utilization
                            ),
                        ),
                    )
                ],
            ),
            opts=k8s_opts,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=meta("server", f"{app.app_name}-server"),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                # maxUnavailable, not minAvailable: a drain always makes progress, even at one replica.
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
            ),
            opts=k8s_opts,
        )

        self.namespace = namespace
        self.model_version = version
        self.basic_auth_username = args.basic_auth_username
        self.basic_auth_password = password
        self.job_name = job.metadata.name
        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.url, self.port_forward = _url(args, service)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "modelVersion": self.model_version,
                "url": self.url,
                "basicAuthUsername": self.basic_auth_username,
                "basicAuthPassword": self.basic_auth_password,
                "jobName": self.job_name,
                "deploymentName": self.deployment_name,
                "serviceName": self.service_name,
            }
        )

    def _training_job(
        self,
        *,
        name: str,
        args: MlWorkloadsArgs,
        namespace: pulumi.Output[str],
        env_from: list[k8s.core.v1.EnvFromSourceArgs],
        pod_common: dict[str, Any],
        version: pulumi.Output[str],
        claim_name: pulumi.Output[str] | None,
        k8s_opts: pulumi.ResourceOptions,
    ) -> k8s.batch.v1.Job:
        app, training, target = args.app, args.training, args.target
        requests = {"cpu": training.cpu, "memory": training.memory}
        limits = {"memory": training.memory}
        if target.gpu is not None:
            # Extended resources are requested through limits (requests default to them).
            limits[target.gpu.resource_name] = str(training.gpus)
        return k8s.batch.v1.Job(
            f"{name}-train",
            metadata=object_meta(app, namespace, "trainer"),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=training.backoff_limit,
                active_deadline_seconds=training.deadline_seconds,
                pod_failure_policy=gate_failure_policy(),
                # No ttlSecondsAfterFinished: a Job garbage-collected behind Pulumi's
                # back would be recreated, and the model retrained, on the next update.
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=labels(app, "trainer"), annotations=dict(target.model_store.pod_annotations) or None
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="trainer",
                                image=args.trainer_image,
                                args=version.apply(lambda v: trainer_args(app, training, v, target.gpu is not None)),
                                env_from=env_from,
                                env=[
                                    k8s.core.v1.EnvVarArgs(name="MLAPP_TRAINER_IMAGE", value=args.trainer_image),
                                    *gpu_env(target.gpu),
                                ],
                                resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests, limits=limits),
                                security_context=container_security(),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="models", mount_path=MODEL_MOUNT),
                                    k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108
                                ],
                            )
                        ],
                        volumes=[model_volume(target.model_store, claim_name, read_only=False), scratch_volume()],
                        **pod_common,
                        **gpu_scheduling(target.gpu),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts,
                pulumi.ResourceOptions(
                    # pulumi-kubernetes waits for the Job to complete: allow for a GPU
                    # node to scale up from zero and for the whole training run.
                    custom_timeouts=pulumi.CustomTimeouts(create=training.timeout, update=training.timeout)
                ),
            ),
        )

    def _deployment(
        self,
        *,
        name: str,
        args: MlWorkloadsArgs,
        env_from: list[k8s.core.v1.EnvFromSourceArgs],
        pod_common: dict[str, Any],
        version: pulumi.Output[str],
        claim_name: pulumi.Output[str] | None,
        labels_config: k8s.core.v1.ConfigMap,
        auth_secret: k8s.core.v1.Secret,
        namespace: pulumi.Output[str],
        opts: pulumi.ResourceOptions,
    ) -> k8s.apps.v1.Deployment:
        app, serving, target = args.app, args.serving, args.target
        probe = probes()

        def secret_env(var: str, key: str) -> k8s.core.v1.EnvVarArgs:
            return k8s.core.v1.EnvVarArgs(
                name=var,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=auth_secret.metadata.name, key=key)
                ),
            )

        pod_labels = labels(app, "server")
        return k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=object_meta(app, namespace, "server", f"{app.app_name}-server"),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # The autoscaler owns the replica count after creation (ignore_changes).
                replicas=serving.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_unavailable=0, max_surge=ROLLOUT_MAX_SURGE
                    ),
                ),
                revision_history_limit=5,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=pod_labels, annotations=dict(target.model_store.pod_annotations) or None
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="server",
                                image=args.server_image,
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(
                                        name=PORT_NAME, container_port=APP_PORT, protocol="TCP"
                                    )
                                ],
                                env_from=env_from,
                                env=[
                                    k8s.core.v1.EnvVarArgs(name="MLAPP_MODEL_VERSION", value=version),
                                    secret_env("MLAPP_AUTH_USERNAME", "username"),
                                    secret_env("MLAPP_AUTH_PASSWORD", "password"),
                                ],
                                startup_probe=probe["startup"],
                                readiness_probe=probe["readiness"],
                                liveness_probe=probe["liveness"],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": serving.cpu_request, "memory": serving.memory_request},
                                    limits={"cpu": serving.cpu_limit, "memory": serving.memory_limit},
                                ),
                                # Keep serving while the endpoint removal reaches every load balancer.
                                lifecycle=k8s.core.v1.LifecycleArgs(
                                    pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                                        sleep=k8s.core.v1.SleepActionArgs(seconds=5)
                                    )
                                ),
                                security_context=container_security(),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="models", mount_path=MODEL_MOUNT, read_only=True),
                                    k8s.core.v1.VolumeMountArgs(name="labels", mount_path=LABELS_DIR, read_only=True),
                                    k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108
                                ],
                            )
                        ],
                        termination_grace_period_seconds=30,
                        topology_spread_constraints=[
                            k8s.core.v1.TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="kubernetes.io/hostname",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
                            )
                        ],
                        volumes=[
                            model_volume(target.model_store, claim_name, read_only=True),
                            k8s.core.v1.VolumeArgs(
                                name="labels",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=labels_config.metadata.name,
                                    items=[k8s.core.v1.KeyToPathArgs(key=LABELS_KEY, path=LABELS_KEY)],
                                ),
                            ),
                            scratch_volume(),
                        ],
                        **pod_common,
                    ),
                ),
            ),
            opts=opts,
        )

    def _service(
        self, name: str, args: MlWorkloadsArgs, namespace: pulumi.Output[str], k8s_opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Service:
        app, serving = args.app, args.serving
        annotations = {} if args.target.external_load_balancer else {
            # kind never assigns an external IP: do not let `pulumi up` wait for one.
            "pulumi.com/skipAwait": "true"
        }  # fmt: skip
        return k8s.core.v1.Service(
            f"{name}-service",
            metadata=object_meta(app, namespace, "server", app.app_name, annotations),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=selector(app, "server"),
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name=PORT_NAME, port=serving.service_port, target_port=PORT_NAME, protocol="TCP"
                    )
                ],
                load_balancer_source_ranges=list(serving.allowed_source_ranges) or None,
            ),
            opts=k8s_opts,
        )


def _check(args: MlWorkloadsArgs) -> None:
    gpu = args.target.gpu
    if gpu is not None and args.training.gpus > gpu.gpus_per_node:
        raise WorkloadsError(
            f"mlstack:trainerGpus = {args.training.gpus}: the GPU pool's nodes carry "
            f"{gpu.gpus_per_node} {gpu.gpu_model} GPU(s); a pod can request at most that many"
        )


LOCAL_PORT = 8080


def load_balancer_url(status: object, port: int) -> str:
    """The URL of a LoadBalancer Service from its status (an SDK output type or None)."""
    load_balancer = getattr(status, "load_balancer", None)
    ingress = getattr(load_balancer, "ingress", None) or []
    host = (getattr(ingress[0], "hostname", None) or getattr(ingress[0], "ip", None)) if ingress else None
    if not host:
        return "pending: the load balancer has no address yet"
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def _url(args: MlWorkloadsArgs, service: k8s.core.v1.Service) -> tuple[pulumi.Output[str], str | None]:
    """The service URL, and the port-forward that makes it reachable where there is no external IP."""
    port = args.serving.service_port
    if args.target.external_load_balancer:
        return service.status.apply(lambda status: load_balancer_url(status, port)), None
    context = f" --context {args.kube_context}" if args.kube_context else ""
    forward = f"kubectl{context} -n {args.app.namespace} port-forward service/{args.app.app_name} {LOCAL_PORT}:{port}"
    return pulumi.Output.from_input(f"http://localhost:{LOCAL_PORT}"), forward
