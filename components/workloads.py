"""MlWorkloads: everything that runs inside the cluster.

Namespace, the server's ConfigMaps and basic-auth Secret, the model store, the
training Job (the team's trainer, under the trainer contract: docs/trainer-contract.md),
the publish Job (the server image's publisher judges what the trainer wrote
against the gate and publishes it), then (only once a model passed its gate
and was published) the serving Deployment, its LoadBalancer Service (HTTPS
only), the in-cluster metrics Service, autoscaler and disruption budget.

The server terminates TLS with a certificate from a ``kubernetes.io/tls``
Secret: the user's own (secret config), or one the stack signs with a CA it
makes (pulumi-tls), naming the load balancer's address, ``localhost`` and the
Service's in-cluster names. The order is Service, certificate, Secret,
Deployment: the certificate names the address the Service was given.

The pure builders (labels, env, probes, scheduling, the model version, the
publish command) are module functions so tests can call them without mocks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls

from components import network
from components.target import ClusterTarget, GpuScheduling, ModelStore, pod_placement
from mlapp import contract
from mlstack import autoscaling, checkov, monitoring, rules
from mlstack.capacity import ROLLOUT_MAX_SURGE
from mlstack.problems import format_problems
from mlstack.specs import App, Serving, Training
from mlstack.tls import (
    CA_EARLY_RENEWAL_HOURS,
    CA_VALIDITY_HOURS,
    SERVER_EARLY_RENEWAL_HOURS,
    SERVER_VALIDITY_HOURS,
    CertificateNames,
    certificate_names,
)

MANAGED_BY = "pulumi"
PART_OF = "mlstack"
HTTPS_PORT = 443  # a URL on it needs no port
LOCAL_PORT = 8443  # where the port-forward hint listens, for a cluster without external addresses

# A Secret of this type holds the certificate chain under tls.crt and its key under tls.key; the
# API server refuses one without both (https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets).
TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a password
TLS_SECRET_CERTIFICATE = "tls.crt"  # noqa: S105 - a key's name, not a password
TLS_SECRET_PRIVATE_KEY = "tls.key"  # noqa: S105 - a key's name, not a password
TLS_VOLUME = "tls"
# A Secret of this type holds the credentials under these two keys
# (https://kubernetes.io/docs/concepts/configuration/secret/#basic-authentication-secret).
AUTH_SECRET_TYPE = "kubernetes.io/basic-auth"  # noqa: S105 - a Secret type, not a password
AUTH_SECRET_USERNAME = "username"  # noqa: S105 - a key's name, not a password
AUTH_SECRET_PASSWORD = "password"  # noqa: S105 - a key's name, not a password
AUTH_VOLUME = "auth"
# The mode of the files a secret volume makes (the TLS key, the password): owner and group read only; with
# the pod's fsGroup they belong to the app's group
# (https://kubernetes.io/docs/tasks/configure-pod-container/security-context/, fsGroup).
SECRET_FILE_MODE = 0o440
# The server reads its certificate at start: the pod template carries the certificate's digest, so a
# new certificate rolls the pods, and the diff says why. The certificate is public; its key never is.
CERTIFICATE_DIGEST_ANNOTATION = "mlstack.io/tls-certificate-sha256"
# ECDSA P-256: what every TLS client accepts, and small (pulumi-tls PrivateKey: algorithm, ecdsa_curve).
KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
# Key usages (RFC 5280 4.2.1.3 and 4.2.1.12): the CA signs certificates; the server proves its
# key in the handshake (an ECDSA key signs, it does not encipher).
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_USES = ("digital_signature", "server_auth")
# Pod Security Admission: the API server refuses, in this namespace, any pod that breaks the
# "restricted" Pod Security Standard (https://kubernetes.io/docs/concepts/security/pod-security-admission/,
# "Pod Security Admission labels for namespaces"). Enforced as of the Kubernetes version the manifests are
# validated against, so a cluster upgrade cannot tighten it under running pods; warned and audited as of
# the latest, so a coming change shows in `kubectl apply` warnings and the audit log first (the pinning
# the same page recommends).
PSA_PREFIX = "pod-security.kubernetes.io"
PSA_LEVEL = "restricted"
# An Indexed Job sets each pod's hostname to "<job name>-<completion index>"; with the pod template's
# subdomain naming a headless Service, "<hostname>.<service>" resolves to that pod
# (https://kubernetes.io/docs/tasks/job/job-with-pod-to-pod-communication/). The index is "available in
# the pod annotation batch.kubernetes.io/job-completion-index" (Kubernetes >= 1.24; also as the
# JOB_COMPLETION_INDEX variable, which a container's own env cannot name before it is set):
# https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode. The downward API hands
# an annotation's value to a variable ("metadata.annotations['<KEY>']",
# https://kubernetes.io/docs/concepts/workloads/pods/downward-api/).
JOB_COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# The label the Job controller puts on its pods, naming their Job (Kubernetes >= 1.27:
# https://kubernetes.io/docs/reference/labels-annotations-taints/#batch-kubernetes-io-job-name); the downward
# API gives a label's value to an environment variable (https://kubernetes.io/docs/concepts/workloads/pods/downward-api/,
# "metadata.labels['<KEY>']"). The Job is auto-named, so a pod learns index 0's name from its own Job's.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# The trainer contract's table gives HOME too (docs/trainer-contract.md, "Environment"): the root
# filesystem is read-only and the user has no home directory, so HOME is the scratch emptyDir, whatever
# the team's image sets.
HOME = "HOME"
# The publish step: the server image's publisher (mlapp.publish) on what the trainer wrote.
PUBLISH_MODULE = "mlapp.publish"
PUBLISH_BACKOFF_LIMIT = 2  # a store's passing fault retried; the gate and a broken contract are not retried
# Hashing a model (SHA-256) and copying it into its version through a network store (GCS FUSE, Azure
# Files) runs at tens of MiB/s: a model of several GiB takes minutes. 15 minutes bounds the Job, its
# retries included, and a mount that hangs.
PUBLISH_DEADLINE_SECONDS = 15 * 60
# `pulumi up` waits five minutes past the Job's own deadline, so that what it reports is the Job's
# verdict (its failure and the reason), never its own timeout.
PUBLISH_TIMEOUT = f"{PUBLISH_DEADLINE_SECONDS // 60 + 5}m"


# A server on the GPU pool (mlstack:serverGpu) may wait for a GPU node the pool makes from zero, its
# driver, and an image with two gigabytes of CUDA wheels: GKE's driver installer alone runs for
# minutes, and a node from zero takes minutes more. The Deployment reports progress within 30 minutes
# (its progressDeadlineSeconds: "the number of seconds you want to wait for your Deployment to
# progress before the system reports back that the Deployment has failed progressing", default 600,
# kubernetes.io/docs/concepts/workloads/controllers/deployment/#progress-deadline-seconds), and `pulumi
# up` waits five minutes past that, so that what it reports is the Deployment's own verdict.
GPU_SERVER_PROGRESS_SECONDS = 30 * 60
GPU_SERVER_TIMEOUT = f"{GPU_SERVER_PROGRESS_SECONDS // 60 + 5}m"
GPUS_PER_SERVER = 1


@dataclass(frozen=True)
class ServerCertificate:
    """The server's certificate chain (server first) and its private key, both PEM."""

    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]  # always a secret Output


@dataclass(frozen=True)
class MlWorkloadsArgs:
    target: ClusterTarget
    app: App
    training: Training
    serving: Serving
    trainer_image: pulumi.Input[str]
    server_image: pulumi.Input[str]
    basic_auth_username: str
    basic_auth_password: pulumi.Output[str] | None  # None: generate one
    model_store_size: str
    kubernetes_version: str  # the minor version Pod Security Admission enforces as of, e.g. "1.33"
    storage_class: str | None = None  # overrides the target's choice
    kube_context: str | None = None  # for the port-forward hint where there is no external IP
    # The user's own certificate and key; None: the stack makes its own CA and server certificate.
    server_certificate: ServerCertificate | None = None


class WorkloadsError(pulumi.RunError):
    """The workloads cannot be built on this target with this configuration."""


# --- pure builders -----------------------------------------------------------


def labels(app: App, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels every object carries."""
    return {
        "app.kubernetes.io/name": app.app_name,
        "app.kubernetes.io/instance": f"{app.app_name}-{app.namespace}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(app: App, component: str) -> dict[str, str]:
    """The immutable subset of labels a Deployment, Service and PDB select on."""
    full = labels(app, component)
    return {k: full[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")}


def namespace_labels(app: App, kubernetes_version: str) -> dict[str, str]:
    """The app's labels, and Pod Security Admission's "restricted" enforced as of ``kubernetes_version``."""
    return {
        **labels(app, "namespace"),
        f"{PSA_PREFIX}/enforce": PSA_LEVEL,
        f"{PSA_PREFIX}/enforce-version": f"v{kubernetes_version}",
        f"{PSA_PREFIX}/warn": PSA_LEVEL,
        f"{PSA_PREFIX}/warn-version": "latest",
        f"{PSA_PREFIX}/audit": PSA_LEVEL,
        f"{PSA_PREFIX}/audit-version": "latest",
    }


def object_meta(
    app: App,
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


def model_version(trainer_image: str, training: Training) -> str:
    """A version derived from what produced the model: the trainer image, its command and the training
    parameters.

    The gate, retries and deadlines are left out: they decide whether a model
    is accepted, not what it is.
    """
    produced_by = {
        "trainerImage": trainer_image,
        "trainerCommand": list(training.command),
        "epochs": training.epochs,
        "batchSize": training.batch_size,
        "learningRate": training.learning_rate,
        "seed": training.seed,
    }
    digest = hashlib.sha256(json.dumps(produced_by, sort_keys=True).encode()).hexdigest()
    return f"v{digest[:12]}"


def server_config(app: App) -> dict[str, str]:
    """The server's ConfigMap data (envFrom). The labels file only where the stack's modelLabels replace
    the model's own labels: without it the server serves the labels published with the model."""
    data = {
        contract.ENV_PORT: str(contract.PORT),
        contract.ENV_MODEL_NAME: app.model_name,
        contract.ENV_MODEL_DIR: contract.MODEL_MOUNT,
        contract.ENV_LOG_LEVEL: app.log_level,
    }
    if app.model_labels:
        data[contract.ENV_LABELS_FILE] = f"{contract.LABELS_DIR}/{contract.LABELS_FILE_NAME}"
    return data


def labels_file(app: App) -> str:
    return "".join(f"{label}\n" for label in app.model_labels)


def ranks_service_name(app: App) -> str:
    """The headless Service under which a multi-node training Job's pods find each other by name."""
    return f"{app.app_name}-trainers"


def _var(name: str, source: str | k8s.core.v1.EnvVarSourceArgs) -> k8s.core.v1.EnvVarArgs:
    """A variable with a value, or one the downward API fills in."""
    if isinstance(source, str):
        return k8s.core.v1.EnvVarArgs(name=name, value=source)
    return k8s.core.v1.EnvVarArgs(name=name, value_from=source)


def _pod_field(path: str) -> k8s.core.v1.EnvVarSourceArgs:
    return k8s.core.v1.EnvVarSourceArgs(field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path=path))


def trainer_env(args: MlWorkloadsArgs, version: str, trainer_image: str) -> list[k8s.core.v1.EnvVarArgs]:
    """The trainer container's whole environment: the trainer contract's table (docs/trainer-contract.md,
    "Environment"), the GPU runtime's variables the target needs, and a multi-node group's (group_env).

    MLAPP_DEVICE is ``cuda`` exactly when the pod requests a GPU: the trainer then trains on it or fails
    saying why, instead of training on the CPU of a GPU node.
    """
    app, training, target = args.app, args.training, args.target
    store, name, gate = contract.MODEL_MOUNT, app.model_name, training.gate
    values = {
        contract.ENV_OUTPUT_DIR: contract.run_path(store, name, version),
        contract.ENV_CHECKPOINT_DIR: contract.checkpoint_path(store, name, version),
        contract.ENV_MODEL_RECORD: contract.record_path(store, name, version),
        contract.ENV_MODEL_NAME: name,
        contract.ENV_MODEL_VERSION: version,
        contract.ENV_DEVICE: "cuda" if target.gpu is not None else "cpu",
        contract.ENV_EPOCHS: str(training.epochs),
        contract.ENV_BATCH_SIZE: str(training.batch_size),
        contract.ENV_LEARNING_RATE: repr(training.learning_rate),
        contract.ENV_SEED: str(training.seed),
        contract.ENV_GATE_METRIC: gate.metric,
        contract.ENV_GATE_DIRECTION: gate.direction,
        contract.ENV_GATE_THRESHOLD: repr(gate.threshold),
        **trainer_metrics(target.scrape_by)[0],
        contract.ENV_LOG_LEVEL: app.log_level,
        contract.ENV_TRAINER_IMAGE: trainer_image,
        HOME: contract.SCRATCH_DIR,
    }
    return [
        *(_var(key, value) for key, value in values.items()),
        *gpu_env(target.gpu),
        *(group_env(app, training) if training.nodes > 1 else []),
    ]


def group_env(app: App, training: Training) -> list[k8s.core.v1.EnvVarArgs]:
    """What each pod of a multi-node Job learns of its group (docs/trainer-contract.md, "Several nodes"),
    under the contract's names and, the same values, torchrun's (contract.TORCHRUN_ENV), so that
    ``torchrun train.py`` needs no flags.

    Static rendezvous (torchrun's default backend with a master address): this pod is node rank = its
    completion index, and index 0's pod hosts the TCPStore the ranks meet at, under its stable DNS name.
    Not c10d's dynamic rendezvous, which ranks the nodes by their sorted addresses
    (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py, "Assign the ranks"), not by index.
    The master address names index 0's pod through the Job's own name, which the controller gives every
    pod as a label; Kubernetes expands ``$(VAR)`` in a variable's value from the variables listed before
    it, and from those only ("an environment variable can reference another only if it is defined
    earlier in the list": https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/),
    so the Job's name comes first. ``PET_MAX_RESTARTS`` 0: torchrun does not restart workers in place;
    when a rank fails every rank exits and the Job recreates the pods, which resume from the checkpoint.
    """
    sources: dict[str, str | k8s.core.v1.EnvVarSourceArgs] = {
        contract.ENV_NUM_NODES: str(training.nodes),
        contract.ENV_NODE_RANK: _pod_field(f"metadata.annotations['{JOB_COMPLETION_INDEX_ANNOTATION}']"),
        contract.ENV_GPUS_PER_NODE: str(training.gpus),
        contract.ENV_MASTER_ADDR: f"$({contract.ENV_JOB_NAME})-0.{ranks_service_name(app)}",
        contract.ENV_MASTER_PORT: str(contract.RENDEZVOUS_PORT),
    }
    restarts_name, restarts = contract.TORCHRUN_MAX_RESTARTS
    return [
        _var(contract.ENV_JOB_NAME, _pod_field(f"metadata.labels['{JOB_NAME_LABEL}']")),
        *(_var(name, source) for name, source in sources.items()),
        *(_var(contract.TORCHRUN_ENV[name], source) for name, source in sources.items()),
        _var(restarts_name, restarts),
    ]


def publish_command(app: App, training: Training, version: str) -> list[str]:
    """The publish step's command: the server image's publisher on the run's outputs (docs/trainer-contract.md,
    "What runs, and when"). It judges the gate, publishes the version into the store and removes the run's
    outputs and checkpoints; a version already published is a success."""
    return [
        "python", "-m", PUBLISH_MODULE,
        "--run", contract.run_path(contract.MODEL_MOUNT, app.model_name, version),
        "--model-dir", contract.MODEL_MOUNT,
        "--model-name", app.model_name,
        "--version", version,
        "--gate", str(training.gate),
    ]  # fmt: skip


def ranks_service_spec(app: App) -> k8s.core.v1.ServiceSpecArgs:
    """Headless (no cluster IP, no load balancing): DNS answers each training pod's own address. Not-ready
    addresses are published too, so a pod's name resolves from its start, before any readiness."""
    return k8s.core.v1.ServiceSpecArgs(
        cluster_ip="None",
        selector=selector(app, "trainer"),
        publish_not_ready_addresses=True,
        ports=[
            k8s.core.v1.ServicePortArgs(
                name=contract.RENDEZVOUS_PORT_NAME,
                port=contract.RENDEZVOUS_PORT,
                target_port=contract.RENDEZVOUS_PORT_NAME,
                protocol="TCP",
            )
        ],
    )


@dataclass(frozen=True)
class Probes:
    startup: k8s.core.v1.ProbeArgs
    readiness: k8s.core.v1.ProbeArgs
    liveness: k8s.core.v1.ProbeArgs


def probes() -> Probes:
    """Startup and readiness wait for the model; liveness only asks that the process serves.

    On the public TLS port, so a server that cannot serve TLS is never ready. The kubelet sends an
    HTTPS probe without verifying the certificate ("If scheme field is set to HTTPS, the kubelet sends
    an HTTPS request skipping the certificate verification",
    https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#http-probes),
    so it need not trust the stack's CA.
    """

    def http(path: str, period: int, failures: int, timeout: int = 2) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=contract.PORT_NAME, scheme="HTTPS"),
            period_seconds=period,
            failure_threshold=failures,
            timeout_seconds=timeout,
        )

    return Probes(
        # Up to 5 minutes to load a model from a cold network volume.
        startup=http(contract.READY_PATH, period=5, failures=60),
        readiness=http(contract.READY_PATH, period=5, failures=2),
        liveness=http(contract.LIVE_PATH, period=10, failures=3),
    )


def server_ports() -> list[k8s.core.v1.ContainerPortArgs]:
    """The public TLS port and the in-cluster metrics port, both named as the Services target them."""
    return [
        k8s.core.v1.ContainerPortArgs(name=contract.PORT_NAME, container_port=contract.PORT, protocol="TCP"),
        metrics_port(),
    ]


def server_env(username: str) -> list[k8s.core.v1.EnvVarArgs]:
    """What only the server reads: the basic-auth username, where its certificate, key and password are
    mounted, and its metrics port.

    On the container, not in the ConfigMap the trainer shares: paths, never the key or the password
    themselves (auth_volume, tls_volume). The username is no secret: it is plain config and a plain stack
    output (basicAuthUsername).
    """
    values = {
        contract.ENV_AUTH_USERNAME: username,
        contract.ENV_AUTH_PASSWORD_FILE: f"{contract.AUTH_DIR}/{contract.AUTH_PASSWORD_FILE_NAME}",
        contract.ENV_TLS_CERT_FILE: f"{contract.TLS_DIR}/{contract.TLS_CERT_FILE_NAME}",
        contract.ENV_TLS_KEY_FILE: f"{contract.TLS_DIR}/{contract.TLS_KEY_FILE_NAME}",
        contract.ENV_METRICS_PORT: str(contract.METRICS_PORT),
    }
    return [k8s.core.v1.EnvVarArgs(name=name, value=value) for name, value in values.items()]


def tls_volume(secret_name: pulumi.Input[str]) -> k8s.core.v1.VolumeArgs:
    """The TLS Secret as the files the server reads: its two keys under the contract's file names."""
    return k8s.core.v1.VolumeArgs(
        name=TLS_VOLUME,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=secret_name,
            default_mode=SECRET_FILE_MODE,
            items=[
                k8s.core.v1.KeyToPathArgs(key=TLS_SECRET_CERTIFICATE, path=contract.TLS_CERT_FILE_NAME),
                k8s.core.v1.KeyToPathArgs(key=TLS_SECRET_PRIVATE_KEY, path=contract.TLS_KEY_FILE_NAME),
            ],
        ),
    )


def tls_mount() -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name=TLS_VOLUME, mount_path=contract.TLS_DIR, read_only=True)


def auth_volume(secret_name: pulumi.Input[str]) -> k8s.core.v1.VolumeArgs:
    """The basic-auth Secret's password as the file the server reads (contract.AUTH_DIR says why a file)."""
    return k8s.core.v1.VolumeArgs(
        name=AUTH_VOLUME,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=secret_name,
            default_mode=SECRET_FILE_MODE,
            items=[k8s.core.v1.KeyToPathArgs(key=AUTH_SECRET_PASSWORD, path=contract.AUTH_PASSWORD_FILE_NAME)],
        ),
    )


def auth_mount() -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name=AUTH_VOLUME, mount_path=contract.AUTH_DIR, read_only=True)


def certificate_sha256(certificate: str) -> str:
    """The digest the pod template carries: of the certificate chain (public), never of the key."""
    return hashlib.sha256(certificate.encode()).hexdigest()


def gpu_env(gpu: GpuScheduling | None) -> list[k8s.core.v1.EnvVarArgs]:
    """What a CUDA container needs in its environment on the target's GPU nodes; empty without a GPU."""
    env = gpu.container_env if gpu is not None else {}
    return [k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in sorted(env.items())]


def container_security() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=contract.APP_UID,
        run_as_group=contract.APP_UID,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        privileged=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security() -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=contract.APP_UID,
        run_as_group=contract.APP_UID,
        # Volumes (the model store) become group-writable by the app's group.
        fs_group=contract.APP_UID,
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
    # The root filesystem is read-only; the scratch directory is the one writable place.
    return k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi"))


def scratch_mount() -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=contract.SCRATCH_DIR)


# NCCL moves data between the GPUs of one pod through /dev/shm, and the container runtime's default
# (64 MiB, as Docker's) makes it crash at start ("segfault in ncclShmOpen": pytorch/tutorials #2475,
# which gives its containers 2 GB). A memory-backed emptyDir there replaces it; what is written to it
# counts against the container's memory limit (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir).
SHM_VOLUME = "dshm"
SHM_DIR = "/dev/shm"  # noqa: S108 - the kernel's shared-memory mount, replaced by the pod's own volume
SHM_SIZE = "1Gi"


def shm_volume() -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(
        name=SHM_VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit=SHM_SIZE)
    )


def _on_exit(action: str, container: str, *codes: int) -> k8s.batch.v1.PodFailurePolicyRuleArgs:
    return k8s.batch.v1.PodFailurePolicyRuleArgs(
        action=action,
        on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
            container_name=container, operator="In", values=list(codes)
        ),
    )


def _ignore_disruptions() -> k8s.batch.v1.PodFailurePolicyRuleArgs:
    """A Spot eviction or node drain (the DisruptionTarget condition) says nothing about the run: not counted."""
    return k8s.batch.v1.PodFailurePolicyRuleArgs(
        action="Ignore",
        on_pod_conditions=[
            k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(type="DisruptionTarget", status="True")
        ],
    )


def gate_failure_policy(multi_node: bool = False) -> k8s.batch.v1.PodFailurePolicyArgs:
    """The training Job: fail at once when the trainer judged its model under the gate; do not count
    evictions as failures.

    Retrying a deterministic run that missed its gate only burns GPU hours,
    while a Spot eviction or node drain (DisruptionTarget) says nothing about
    the training and should not use up ``backoffLimit``.

    ``multi_node``: a rank that stopped because another failed exits EXIT_PEER (docs/trainer-contract.md,
    "Exit codes"); those pods are recreated without counting, so one fault costs one retry of
    ``backoffLimit``, however many pods the group has. The rules match in order; the
    first that matches decides (https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy;
    GA since Kubernetes 1.31, KEP-3329).
    """
    trainer = contract.TRAINER_CONTAINER
    peer = [_on_exit("Ignore", trainer, contract.EXIT_PEER)] if multi_node else []
    return k8s.batch.v1.PodFailurePolicyArgs(
        rules=[_on_exit("FailJob", trainer, contract.EXIT_GATE), _ignore_disruptions(), *peer]
    )


def publish_failure_policy() -> k8s.batch.v1.PodFailurePolicyArgs:
    """The publish Job: fail at once on the publisher's verdicts a retry would only repeat, a model under the
    gate and outputs that break the contract; retry anything else (the store, say), evictions uncounted."""
    return k8s.batch.v1.PodFailurePolicyArgs(
        rules=[
            _on_exit("FailJob", contract.PUBLISHER_CONTAINER, contract.EXIT_GATE, contract.EXIT_CONTRACT),
            _ignore_disruptions(),
        ]
    )


@dataclass(frozen=True)
class PodRefs:
    """The objects a pod refers to by name, created before it."""

    trainer_account: pulumi.Input[str]
    server_account: pulumi.Input[str]
    env_config: pulumi.Input[str]
    model_claim: pulumi.Input[str] | None  # None: the store is an inline CSI volume
    model_version: pulumi.Input[str]


@dataclass(frozen=True)
class TlsRefs:
    """What the serving pods take from the TLS Secret: its name, and the digest of its certificate."""

    secret_name: pulumi.Input[str]
    certificate_sha256: pulumi.Input[str]


def pod_template_meta(
    app: App, component: str, store: ModelStore, annotations: Mapping[str, pulumi.Input[str]] | None = None
) -> k8s.meta.v1.ObjectMetaArgs:
    merged: dict[str, pulumi.Input[str]] = {**store.pod_annotations, **(annotations or {})}
    return k8s.meta.v1.ObjectMetaArgs(labels=labels(app, component), annotations=merged or None)


def env_from(refs: PodRefs) -> list[k8s.core.v1.EnvFromSourceArgs]:
    return [k8s.core.v1.EnvFromSourceArgs(config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=refs.env_config))]


def store_mount(read_only: bool = False) -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name="models", mount_path=contract.MODEL_MOUNT, read_only=read_only or None)


# The trainer has a CPU request and no CPU limit, on purpose. "The CPU limit defines a hard ceiling on how
# much CPU time the container can use. During each scheduling interval (time slice), the Linux kernel checks
# to see if this limit is exceeded; if so, the kernel waits before allowing that cgroup to resume execution",
# while "the CPU request typically defines a weighting" under contention
# (https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#how-pods-with-resource-limits-are-run).
# A limit is that CFS quota: it throttles the trainer's data loading and input pipeline, which feed the GPU
# in bursts, even while the node's other CPUs sit idle (kubernetes/kubernetes#67577, "CFS quotas can lead to
# unnecessary throttling"). It would buy nothing: the GPU pool's taint keeps other workloads off its
# nodes (pod_placement), and on a cluster without GPUs the trainer is the one batch pod, whose request already
# protects its neighbours. Memory, which cannot be taken back, is limited. Said to Checkov on the Job.
TRAINER_CHECKOV_SKIPS: Mapping[str, str] = {
    "CKV_K8S_11": (
        "no CPU limit on the trainer: a limit is a CFS quota that throttles its data loading even on idle "
        "CPUs, for nothing on a GPU node its taint keeps for it; its CPU request is its share under "
        "contention, and its memory is limited"
    ),
}


def training_job_spec(
    args: MlWorkloadsArgs, refs: PodRefs, env: pulumi.Input[Sequence[k8s.core.v1.EnvVarArgs]]
) -> k8s.batch.v1.JobSpecArgs:
    """The training Job: the team's trainer on the GPU pool, writing the model store, failing fast on the gate.

    The container runs the image's ENTRYPOINT/CMD, or mlstack:trainerCommand; ``env`` is ``trainer_env``'s.
    With ``training.nodes`` > 1, an Indexed Job of that many pods, all at once, each learning its rank and
    index 0's address from its environment (group_env), named under the headless Service.
    """
    app, training, target = args.app, args.training, args.target
    multi_node = training.nodes > 1
    # Several ranks in one pod talk through shared memory (shm_volume).
    shared_memory = multi_node and training.gpus > 1
    store = target.model_store
    limits = {"memory": training.memory}  # and no CPU limit: TRAINER_CHECKOV_SKIPS says why
    if target.gpu is not None:
        # Extended resources are requested through limits (requests default to them).
        limits[target.gpu.resource_name] = str(training.gpus)
    placement = pod_placement(target.gpu)
    trainer = k8s.core.v1.ContainerArgs(
        name=contract.TRAINER_CONTAINER,
        image=args.trainer_image,
        # None: the image's own ENTRYPOINT/CMD. Never args: the contract speaks through the environment.
        command=list(training.command) or None,
        ports=[metrics_port(), *([rendezvous_port()] if multi_node else [])],
        env=env,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": training.cpu, "memory": training.memory}, limits=limits
        ),
        security_context=container_security(),
        volume_mounts=[
            store_mount(),
            scratch_mount(),
            *([k8s.core.v1.VolumeMountArgs(name=SHM_VOLUME, mount_path=SHM_DIR)] if shared_memory else []),
        ],
    )
    return k8s.batch.v1.JobSpecArgs(
        # Indexed: pod i is rank i and keeps its index (and name) when it is recreated; every pod at once,
        # since the ranks rendezvous before the first step. The Job succeeds when every index has.
        completion_mode="Indexed" if multi_node else None,
        completions=training.nodes if multi_node else None,
        parallelism=training.nodes if multi_node else None,
        # One fault costs one retry whatever the group's size: the ranks that stopped for it are ignored
        # (gate_failure_policy). Not backoffLimitPerIndex (GA in 1.33): a rank's retries are the group's.
        backoff_limit=training.backoff_limit,
        active_deadline_seconds=training.deadline_seconds,
        pod_failure_policy=gate_failure_policy(multi_node),
        # No ttlSecondsAfterFinished: a Job garbage-collected behind Pulumi's
        # back would be recreated, and the model retrained, on the next update.
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=pod_template_meta(app, "trainer", store, trainer_metrics(target.scrape_by)[1]),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                subdomain=ranks_service_name(app) if multi_node else None,
                containers=[trainer],
                volumes=[
                    model_volume(store, refs.model_claim, read_only=False),
                    scratch_volume(),
                    *([shm_volume()] if shared_memory else []),
                ],
                service_account_name=refs.trainer_account,
                automount_service_account_token=store.needs_service_account_token,
                security_context=pod_security(),
                node_selector=placement.node_selector,
                tolerations=placement.tolerations,
            ),
        ),
    )


def publish_job_spec(
    args: MlWorkloadsArgs, refs: PodRefs, command: pulumi.Input[list[str]]
) -> k8s.batch.v1.JobSpecArgs:
    """The publish Job: the server image's publisher (``publish_command``) on what the trainer wrote.

    It runs as the trainer's ServiceAccount (a cloud target grants that one alone write access to the
    store), with the store mounted read-write. No GPU and no toleration: it runs on the system pool,
    with the serving pod's requests and limits, since it loads the model as the server does. The
    publisher's verdicts a retry would repeat (under the gate, a broken contract) fail it at once.
    """
    app, serving, store = args.app, args.serving, args.target.model_store
    publisher = k8s.core.v1.ContainerArgs(
        name=contract.PUBLISHER_CONTAINER,
        image=args.server_image,
        command=command,
        env=[
            # Recorded in the published model's metadata.
            k8s.core.v1.EnvVarArgs(name=contract.ENV_TRAINER_IMAGE, value=args.trainer_image),
            k8s.core.v1.EnvVarArgs(name=contract.ENV_LOG_LEVEL, value=app.log_level),
        ],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": serving.cpu_request, "memory": serving.memory_request},
            limits={"cpu": serving.cpu_limit, "memory": serving.memory_limit},
        ),
        security_context=container_security(),
        volume_mounts=[store_mount(), scratch_mount()],
    )
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=PUBLISH_BACKOFF_LIMIT,
        active_deadline_seconds=PUBLISH_DEADLINE_SECONDS,
        pod_failure_policy=publish_failure_policy(),
        # No ttlSecondsAfterFinished, as for the training Job: Pulumi owns the Job.
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=pod_template_meta(app, "publisher", store),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                containers=[publisher],
                volumes=[model_volume(store, refs.model_claim, read_only=False), scratch_volume()],
                service_account_name=refs.trainer_account,
                automount_service_account_token=store.needs_service_account_token,
                security_context=pod_security(),
            ),
        ),
    )


def server_deployment_spec(
    args: MlWorkloadsArgs,
    refs: PodRefs,
    labels_config: pulumi.Input[str] | None,
    auth_secret: pulumi.Input[str],
    tls_refs: TlsRefs,
) -> k8s.apps.v1.DeploymentSpecArgs:
    """The serving Deployment: rolls one pod at a time, never below the replica count, probes on the model,
    TLS and the basic-auth password as files from their Secrets (``auth_secret``: the basic-auth one's
    name), and a shutdown inside the grace period the app's contract states.

    ``labels_config``: the ConfigMap of the stack's modelLabels, mounted where the server's ConfigMap
    points; None: the model's own published labels are served, and nothing is mounted."""
    app, serving, store = args.app, args.serving, args.target.model_store
    gpu = server_gpu(args)
    placement = pod_placement(gpu)
    probe = probes()
    server = k8s.core.v1.ContainerArgs(
        name=contract.SERVER_CONTAINER,
        image=args.server_image,
        ports=server_ports(),
        env_from=env_from(refs),
        env=[
            k8s.core.v1.EnvVarArgs(name=contract.ENV_MODEL_VERSION, value=refs.model_version),
            *server_env(args.basic_auth_username),
            *server_gpu_env(gpu),
        ],
        startup_probe=probe.startup,
        readiness_probe=probe.readiness,
        liveness_probe=probe.liveness,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": serving.cpu_request, "memory": serving.memory_request},
            # Extended resources are asked for in limits; the request defaults to it ("you can specify only
            # limits for extended resources", kubernetes.io/docs/tasks/manage-gpus/scheduling-gpus/).
            limits={
                "cpu": serving.cpu_limit,
                "memory": serving.memory_limit,
                **({gpu.resource_name: str(GPUS_PER_SERVER)} if gpu is not None else {}),
            },
        ),
        # Keep serving while the endpoint removal reaches every load balancer; the app's contract
        # sizes this pause and its drain to end inside the grace period.
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                sleep=k8s.core.v1.SleepActionArgs(seconds=contract.PRESTOP_SECONDS)
            )
        ),
        security_context=container_security(),
        volume_mounts=[
            store_mount(read_only=True),
            *([k8s.core.v1.VolumeMountArgs(name="labels", mount_path=contract.LABELS_DIR, read_only=True)]
              if labels_config is not None else []),
            tls_mount(),
            auth_mount(),
            scratch_mount(),
        ],
    )  # fmt: skip
    labels_volumes = []
    if labels_config is not None:
        labels_volumes.append(
            k8s.core.v1.VolumeArgs(
                name="labels",
                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                    name=labels_config,
                    items=[k8s.core.v1.KeyToPathArgs(key=contract.LABELS_FILE_NAME, path=contract.LABELS_FILE_NAME)],
                ),
            )
        )
    return k8s.apps.v1.DeploymentSpecArgs(
        # The autoscaler owns the replica count after creation (ignore_changes).
        replicas=serving.replicas,
        progress_deadline_seconds=GPU_SERVER_PROGRESS_SECONDS if gpu is not None else None,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=ROLLOUT_MAX_SURGE),
        ),
        revision_history_limit=5,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=pod_template_meta(
                app, "server", store, {CERTIFICATE_DIGEST_ANNOTATION: tls_refs.certificate_sha256}
            ),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[server],
                termination_grace_period_seconds=contract.GRACE_SECONDS,
                topology_spread_constraints=[
                    k8s.core.v1.TopologySpreadConstraintArgs(
                        max_skew=1,
                        topology_key="kubernetes.io/hostname",
                        when_unsatisfiable="ScheduleAnyway",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
                    )
                ],
                volumes=[
                    model_volume(store, refs.model_claim, read_only=True),
                    *labels_volumes,
                    tls_volume(tls_refs.secret_name),
                    auth_volume(auth_secret),
                    scratch_volume(),
                ],
                service_account_name=refs.server_account,
                automount_service_account_token=store.needs_service_account_token,
                security_context=pod_security(),
                node_selector=placement.node_selector,
                tolerations=placement.tolerations,
            ),
        ),
    )


def server_gpu(args: MlWorkloadsArgs) -> GpuScheduling | None:
    """The GPU pool the servers run on (mlstack:serverGpu), or None: on the CPU, wherever the scheduler likes."""
    if not args.serving.gpu:
        return None
    if args.target.gpu is None:  # check() refuses this before anything is made
        raise WorkloadsError("mlstack:serverGpu = true: this target has no GPU pool")
    return args.target.gpu


def server_gpu_env(gpu: GpuScheduling | None) -> list[k8s.core.v1.EnvVarArgs]:
    """A GPU server's execution provider, and what a CUDA container needs on the target's GPU nodes; none on
    the CPU (the server's default provider)."""
    if gpu is None:
        return []
    return [k8s.core.v1.EnvVarArgs(name=contract.ENV_EXECUTION_PROVIDER, value="cuda"), *gpu_env(gpu)]


def service_spec(app: App, serving: Serving) -> k8s.core.v1.ServiceSpecArgs:
    """The public LoadBalancer: the TLS port only, never the metrics port."""
    return k8s.core.v1.ServiceSpecArgs(
        type="LoadBalancer",
        selector=selector(app, "server"),
        ports=[
            k8s.core.v1.ServicePortArgs(
                name=contract.PORT_NAME, port=serving.service_port, target_port=contract.PORT_NAME, protocol="TCP"
            )
        ],
        load_balancer_source_ranges=list(serving.allowed_source_ranges) or None,
        # The server throttles failed logins per client address (app/mlapp/serve/auth.py).
        # With the default "Cluster" policy every packet is SNATed to a node's address, so
        # one stranger's guesses would throttle everyone behind that node; "Local" keeps the
        # client's address and sends traffic only to nodes running a serving pod:
        # https://kubernetes.io/docs/tasks/access-application-cluster/create-external-load-balancer/#preserving-the-client-source-ip
        external_traffic_policy="Local",
    )


def metrics_service_name(app: App) -> str:
    return f"{app.app_name}-metrics"


def metrics_service_spec(app: App) -> k8s.core.v1.ServiceSpecArgs:
    """The metrics port for scrapers inside the cluster: a ClusterIP Service, never a load balancer."""
    return k8s.core.v1.ServiceSpecArgs(
        type="ClusterIP",
        selector=selector(app, "server"),
        ports=[
            k8s.core.v1.ServicePortArgs(
                name=contract.METRICS_PORT_NAME,
                port=contract.METRICS_PORT,
                target_port=contract.METRICS_PORT_NAME,
                protocol="TCP",
            )
        ],
    )


# Where the server, and the trainer while it runs, serve their metrics (mlapp.contract).
METRICS_ENDPOINT = monitoring.Endpoint(contract.METRICS_PORT, contract.METRICS_PORT_NAME, contract.METRICS_PATH)


def metrics_service_annotations() -> dict[str, str]:
    """Where a Prometheus that discovers Services by annotation scrapes the server: plain HTTP, in-cluster."""
    return monitoring.scrape_annotations(METRICS_ENDPOINT)


def trainer_metrics(scrape_by: monitoring.ScrapeBy) -> tuple[dict[str, str], dict[str, str]]:
    """The trainer's metrics while the Job runs, should it serve any: its environment (the port to serve them
    on, how long to keep them up after its last value) and its pod's annotations (where a Prometheus
    discovers pods by them)."""
    env = {
        contract.ENV_METRICS_PORT: str(contract.METRICS_PORT),
        contract.ENV_METRICS_LINGER_SECONDS: str(monitoring.trainer_linger_seconds(scrape_by)),
    }
    annotations = monitoring.scrape_annotations(METRICS_ENDPOINT) if scrape_by == "prometheus-annotations" else {}
    return env, annotations


def rendezvous_port() -> k8s.core.v1.ContainerPortArgs:
    """Where index 0's torchrun serves the group's rendezvous store, named as the headless Service targets it."""
    return k8s.core.v1.ContainerPortArgs(
        name=contract.RENDEZVOUS_PORT_NAME, container_port=contract.RENDEZVOUS_PORT, protocol="TCP"
    )


def metrics_port() -> k8s.core.v1.ContainerPortArgs:
    """The in-cluster metrics port, named as the Services, PodMonitors and NetworkPolicies target it."""
    return k8s.core.v1.ContainerPortArgs(
        name=contract.METRICS_PORT_NAME, container_port=contract.METRICS_PORT, protocol="TCP"
    )


def server_hpa_name(app: App) -> str:
    """The HorizontalPodAutoscaler KEDA keeps for the servers: the name the stack's own CPU HPA had before
    KEDA (autoscaling.TRANSFER_HPA_OWNERSHIP says why it is kept)."""
    return f"{app.app_name}-server"


def scaling_trigger(
    serving: Serving, namespace: str, scrape_by: monitoring.ScrapeBy, address: str, series_labels: Mapping[str, str]
) -> dict[str, Any]:
    """The ScaledObject's one trigger: requests in flight from the cluster's Prometheus, or the servers' CPU."""
    if serving.scale_on == "cpu":
        trigger = autoscaling.cpu_trigger(serving.target_cpu_utilization)
        # The server container's own CPU, not its pod's: on GKE the gcsfuse sidecar shares the pod and
        # its requests would dilute the utilisation (KEDA passes containerName to the HPA's
        # ContainerResource metric, pkg/scalers/cpu_memory_scaler.go; GA in Kubernetes 1.30).
        trigger["metadata"]["containerName"] = contract.SERVER_CONTAINER
        return trigger
    window = autoscaling.query_window_seconds(monitoring.server_scrape_seconds(scrape_by))
    query = autoscaling.in_flight_query(namespace, series_labels, window)
    return autoscaling.in_flight_trigger(query, address, serving.target_in_flight)


def disruption_budget_spec(app: App) -> k8s.policy.v1.PodDisruptionBudgetSpecArgs:
    return k8s.policy.v1.PodDisruptionBudgetSpecArgs(
        # maxUnavailable, not minAvailable: a drain always makes progress, even at one replica.
        max_unavailable=1,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
    )


def claim_spec(args: MlWorkloadsArgs) -> k8s.core.v1.PersistentVolumeClaimSpecArgs | None:
    """The model store's claim; None where the store is an inline CSI volume."""
    claim = args.target.model_store.claim
    if claim is None:
        return None
    return k8s.core.v1.PersistentVolumeClaimSpecArgs(
        access_modes=[claim.access_mode],
        storage_class_name=args.storage_class or claim.storage_class,
        resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": args.model_store_size}),
    )


def _field(value: object, name: str) -> object:
    """A field of an SDK output type, or of the plain dict the SDK hands over through Output.all."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def load_balancer_addresses(status: object) -> list[str]:
    """Every address a LoadBalancer Service's status gives (host names and IPs), in its order."""
    ingress = _field(_field(status, "load_balancer"), "ingress")
    if not isinstance(ingress, list):  # None until the cloud gives the load balancer an address
        return []
    addresses = [_field(i, "hostname") or _field(i, "ip") for i in ingress]
    return [str(a) for a in addresses if a]


def load_balancer_url(status: object, port: int) -> str:
    """The HTTPS URL of a LoadBalancer Service from its status (an SDK output type or None)."""
    addresses = load_balancer_addresses(status)
    if not addresses:
        return "pending: the load balancer has no address yet"
    host = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]  # an IPv6 address is bracketed
    return f"https://{host}" if port == HTTPS_PORT else f"https://{host}:{port}"


def port_forward_command(app: App, service_port: int, kube_context: str | None) -> str:
    """How to reach the Service where the cluster gives it no external address (kind)."""
    context = f" --context {kube_context}" if kube_context else ""
    return f"kubectl{context} -n {app.namespace} port-forward service/{app.app_name} {LOCAL_PORT}:{service_port}"


def ca_file_name(app: App) -> str:
    """Where the curl command writes the exported CA certificate for curl to trust."""
    return f"{app.app_name}-ca.pem"


def curl_command(url: str, username: str, port_forward: str | None, ca_file: str | None, model_name: str) -> str:
    """A request ready to paste, for the served model's metadata (Open Inference Protocol v2, GET
    /v2/models/<name>: its inputs and outputs, whatever the model): the password is fetched by the CLI,
    never written out.

    ``ca_file``: where to write the stack's CA certificate (the caCertificate output) for curl to
    trust; None where the user brought a certificate, which curl trusts as the system does.
    """
    steps = [f"({port_forward} &) && sleep 3"] if port_forward else []
    trust = ""
    if ca_file:
        steps.append(f"pulumi stack output caCertificate > {ca_file}")
        trust = f"--cacert {ca_file} "
    steps.append(
        f'curl {trust}-u "{username}:$(pulumi stack output basicAuthPassword --show-secrets)" '
        f"{url}/v2/models/{model_name}"
    )
    return " && ".join(steps)


def check(args: MlWorkloadsArgs) -> None:
    gpu, training, store = args.target.gpu, args.training, args.target.model_store
    linger = monitoring.trainer_linger_seconds(args.target.scrape_by)
    problems = rules.train_deadline(training.deadline_seconds, linger)
    problems += rules.gate_written_form(training.gate)
    shared = store.csi is not None or (store.claim is not None and store.claim.access_mode == "ReadWriteMany")
    problems += rules.train_nodes_target(training.nodes, gpu_pool=gpu is not None, shared_store=shared)
    if gpu is not None:
        problems += rules.trainer_gpus_per_node(training.gpus, gpu.gpus_per_node, gpu.gpu_model, gpu.node_sizes)
        problems += rules.train_nodes(
            nodes=training.nodes,
            trainer_gpus=training.gpus,
            gpus_per_node=gpu.gpus_per_node,
            max_nodes=gpu.max_nodes,
            gpu_model=gpu.gpu_model,
            batch_size=training.batch_size,
        )
    problems += rules.server_gpu_target(args.serving.gpu, gpu_pool=gpu is not None)
    if gpu is not None and args.serving.gpu:
        problems += rules.server_gpu_pool(
            max_replicas=args.serving.max_replicas,
            gpus_per_node=gpu.gpus_per_node,
            max_nodes=gpu.max_nodes,
            train_nodes=training.nodes,
            trainer_gpus=training.gpus,
            gpu_model=gpu.gpu_model,
        )
    if problems:
        raise WorkloadsError(format_problems("cannot run the workloads on this cluster", problems))


# --- the component -------------------------------------------------------------


class MlWorkloads(pulumi.ComponentResource):
    """The ML application inside the cluster: train, gate, then serve."""

    namespace: pulumi.Output[str]
    model_name: str  # served under /v2/models/<name>
    model_version: pulumi.Output[str]
    url: pulumi.Output[str]
    port_forward: str | None
    curl: pulumi.Output[str]
    basic_auth_username: str
    basic_auth_password: pulumi.Output[str]
    job_name: pulumi.Output[str]  # the training Job's
    publish_job_name: pulumi.Output[str]
    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    metrics_service_name: pulumi.Output[str]
    # The CA that signed the server's certificate (public); None where the user brought a certificate.
    ca_certificate: pulumi.Output[str] | None

    def __init__(self, name: str, args: MlWorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check(args)
        super().__init__("mlstack:workloads:MlWorkloads", name, None, opts)
        self._name, self._args = name, args
        self._k8s = pulumi.ResourceOptions(parent=self, provider=args.target.provider)

        self.namespace = self._namespace()
        trainer_account, server_account = self._service_accounts()
        env_config, labels_config = self._config_maps()
        self.basic_auth_username = args.basic_auth_username
        self.basic_auth_password = self._password()
        auth_secret = self._auth_secret(self.basic_auth_password)
        self.model_name = args.app.model_name
        self.model_version = pulumi.Output.from_input(args.trainer_image).apply(
            lambda image: model_version(image, args.training)
        )
        refs = PodRefs(
            trainer_account=trainer_account.metadata.name,
            server_account=server_account.metadata.name,
            env_config=env_config.metadata.name,
            model_claim=self._model_claim(),
            model_version=self.model_version,
        )
        isolation = self._network_policies()
        job = self._training_job(refs, isolation)
        # Judged and published only once the Job has trained, each under its NetworkPolicies.
        publish = self._publish_job(refs, [job, *isolation])
        # Service, then certificate, then Secret, then Deployment: the certificate names the address
        # the Service was given, and the Service does not wait for the Deployment's pods (see _service).
        service = self._service()
        metrics_service = self._metrics_service()
        certificate, self.ca_certificate = self._server_certificate(service)
        tls_refs = TlsRefs(
            secret_name=self._tls_secret(certificate).metadata.name,
            # The digest of a certificate that came in secret config is no secret: keep it readable in diffs.
            certificate_sha256=pulumi.Output.unsecret(certificate.certificate.apply(certificate_sha256)),
        )
        labels_name = labels_config.metadata.name if labels_config is not None else None
        deployment = self._deployment(refs, labels_name, auth_secret.metadata.name, tls_refs, [publish, *isolation])
        self._autoscaling(deployment)
        self._scrape_objects()

        self.job_name = job.metadata.name
        self.publish_job_name = publish.metadata.name
        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.metrics_service_name = metrics_service.metadata.name
        self.url, self.port_forward = self._url(service)
        ca_file = ca_file_name(args.app) if self.ca_certificate is not None else None
        self.curl = self.url.apply(
            lambda url: curl_command(url, args.basic_auth_username, self.port_forward, ca_file, args.app.model_name)
        )
        outputs: dict[str, pulumi.Input[str]] = {
            "namespace": self.namespace,
            "modelName": self.model_name,
            "modelVersion": self.model_version,
            "url": self.url,
            "basicAuthUsername": self.basic_auth_username,
            "basicAuthPassword": self.basic_auth_password,
            "jobName": self.job_name,
            "publishJobName": self.publish_job_name,
            "deploymentName": self.deployment_name,
            "serviceName": self.service_name,
            "metricsServiceName": self.metrics_service_name,
        }
        if self.ca_certificate is not None:
            outputs["caCertificate"] = self.ca_certificate
        self.register_outputs(outputs)

    def _meta(
        self, component: str, name: str | None = None, annotations: Mapping[str, pulumi.Input[str]] | None = None
    ) -> k8s.meta.v1.ObjectMetaArgs:
        return object_meta(self._args.app, self.namespace, component, name, annotations)

    def _namespace(self) -> pulumi.Output[str]:
        app = self._args.app
        ns = k8s.core.v1.Namespace(
            f"{self._name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=app.namespace, labels=namespace_labels(app, self._args.kubernetes_version)
            ),
            opts=self._k8s,
        )
        name: pulumi.Output[str] = ns.metadata.name
        return name

    def _service_accounts(self) -> tuple[k8s.core.v1.ServiceAccount, k8s.core.v1.ServiceAccount]:
        """The trainer's and the servers' identities: two, so that a cloud grants each only what it needs."""
        app, store = self._args.app, self._args.target.model_store

        def account(
            component: str, name: str, annotations: Mapping[str, pulumi.Input[str]]
        ) -> k8s.core.v1.ServiceAccount:
            return k8s.core.v1.ServiceAccount(
                f"{self._name}-{component}-account",
                metadata=self._meta(component, name, annotations),
                automount_service_account_token=store.needs_service_account_token,
                opts=self._k8s,
            )

        return (
            account("trainer", app.trainer_service_account, store.trainer_account_annotations),
            account("server", app.server_service_account, store.server_account_annotations),
        )

    def _config_maps(self) -> tuple[k8s.core.v1.ConfigMap, k8s.core.v1.ConfigMap | None]:
        """The server's environment, and the stack's class labels where they replace the model's own."""
        app = self._args.app
        env = k8s.core.v1.ConfigMap(
            f"{self._name}-env", metadata=self._meta("config"), data=server_config(app), opts=self._k8s
        )
        if not app.model_labels:
            return env, None
        class_names = k8s.core.v1.ConfigMap(
            f"{self._name}-labels",
            metadata=self._meta("config"),
            data={contract.LABELS_FILE_NAME: labels_file(app)},
            opts=self._k8s,
        )
        return env, class_names

    def _password(self) -> pulumi.Output[str]:
        if self._args.basic_auth_password is not None:
            return self._args.basic_auth_password
        generated = random.RandomPassword(
            f"{self._name}-basic-auth-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return pulumi.Output.secret(generated.result)

    def _auth_secret(self, password: pulumi.Output[str]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-basic-auth",
            metadata=self._meta("auth"),
            type=AUTH_SECRET_TYPE,
            string_data={AUTH_SECRET_USERNAME: self._args.basic_auth_username, AUTH_SECRET_PASSWORD: password},
            opts=self._k8s,
        )

    def _model_claim(self) -> pulumi.Output[str] | None:
        spec = claim_spec(self._args)
        if spec is None:
            return None
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{self._name}-model-store",
            metadata=self._meta("model-store", f"{self._args.app.app_name}-models"),
            spec=spec,
            opts=self._k8s,
        )
        claim_name: pulumi.Output[str] = claim.metadata.name
        return claim_name

    def _training_job(self, refs: PodRefs, isolation: list[k8s.networking.v1.NetworkPolicy]) -> k8s.batch.v1.Job:
        args = self._args
        ranks = self._ranks_service()
        env = pulumi.Output.all(refs.model_version, args.trainer_image).apply(
            lambda values: trainer_env(args, version=values[0], trainer_image=values[1])
        )
        return k8s.batch.v1.Job(
            f"{self._name}-train",
            metadata=self._meta("trainer", annotations=checkov.skip_annotations(TRAINER_CHECKOV_SKIPS)),
            spec=training_job_spec(args, refs, env),
            opts=pulumi.ResourceOptions.merge(
                self._k8s,
                pulumi.ResourceOptions(
                    # pulumi-kubernetes waits for the Job to complete: allow for a GPU
                    # node to scale up from zero and for the whole training run.
                    custom_timeouts=pulumi.CustomTimeouts(create=args.training.timeout, update=args.training.timeout),
                    # Its pods start fenced in: no moment without the namespace's NetworkPolicies;
                    # a group's pods find each other under the headless Service.
                    depends_on=[*isolation, *([ranks] if ranks is not None else [])],
                ),
            ),
        )

    def _publish_job(self, refs: PodRefs, after: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """The publish step, once the training Job has succeeded (``after``: it, and the NetworkPolicies)."""
        args = self._args
        command = pulumi.Output.from_input(refs.model_version).apply(
            lambda version: publish_command(args.app, args.training, version)
        )
        return k8s.batch.v1.Job(
            f"{self._name}-publish",
            metadata=self._meta("publisher"),
            spec=publish_job_spec(args, refs, command),
            opts=pulumi.ResourceOptions.merge(
                self._k8s,
                pulumi.ResourceOptions(
                    custom_timeouts=pulumi.CustomTimeouts(create=PUBLISH_TIMEOUT, update=PUBLISH_TIMEOUT),
                    depends_on=after,
                ),
            ),
        )

    def _ranks_service(self) -> k8s.core.v1.Service | None:
        """The headless Service that names a multi-node Job's pods; None for a single pod (nothing new)."""
        app = self._args.app
        if self._args.training.nodes == 1:
            return None
        return k8s.core.v1.Service(
            f"{self._name}-trainers",
            metadata=self._meta("trainer", ranks_service_name(app)),
            spec=ranks_service_spec(app),
            opts=self._k8s,
        )

    def _deployment(
        self,
        refs: PodRefs,
        labels_config: pulumi.Input[str] | None,
        auth_secret: pulumi.Input[str],
        tls_refs: TlsRefs,
        after: list[pulumi.Resource],
    ) -> k8s.apps.v1.Deployment:
        return k8s.apps.v1.Deployment(
            f"{self._name}-server",
            metadata=self._meta("server", f"{self._args.app.app_name}-server"),
            spec=server_deployment_spec(self._args, refs, labels_config, auth_secret, tls_refs),
            # Roll out only a model that passed its gate and was published (``after``: the publish Job,
            # and the NetworkPolicies its pods start under); after creation the autoscaler owns the
            # replica count, so an update must not reset it.
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self._args.target.provider,
                depends_on=after,
                ignore_changes=["spec.replicas"],
                custom_timeouts=(
                    pulumi.CustomTimeouts(create=GPU_SERVER_TIMEOUT, update=GPU_SERVER_TIMEOUT)
                    if self._args.serving.gpu
                    else None
                ),
            ),
        )

    def _network_policies(self) -> list[k8s.networking.v1.NetworkPolicy]:
        """Nothing in or out of the namespace's pods but what each role needs (components/network.py)."""
        app, serving, target = self._args.app, self._args.serving, self._args.target
        egress = (*target.pod_egress, *target.model_store.egress)
        specs = {
            "default-deny": ("namespace", network.default_deny()),
            "server": (
                "server",
                network.server_policy(
                    selector(app, "server"), serving.allowed_source_ranges, target.metrics_scrapers, egress
                ),
            ),
            "trainer": (
                "trainer",
                network.trainer_policy(
                    selector(app, "trainer"), target.metrics_scrapers, egress, peers=self._args.training.nodes > 1
                ),
            ),
            "publisher": ("publisher", network.publisher_policy(selector(app, "publisher"), egress)),
        }
        return [
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-{role}-network",
                metadata=self._meta(component, f"{app.app_name}-{role}"),
                spec=spec,
                opts=self._k8s,
            )
            for role, (component, spec) in specs.items()
        ]

    def _service(self) -> k8s.core.v1.Service:
        """The public Service. With a cloud load balancer, `pulumi up` waits for its address, which the
        certificate then names; it does not wait for pods, of which there are none yet: pulumi-kubernetes
        counts a Service whose selector targets no pod as ready once its load balancer has an address
        (CHANGELOG 4.17: "Services with selectors targeting 0 Pods will no longer hang indefinitely";
        provider/pkg/await/service.go, checkAndLogStatus), so the Deployment can depend on it."""
        app = self._args.app
        annotations = {} if self._args.target.external_load_balancer else {
            # kind never assigns an external IP: do not let `pulumi up` wait for one.
            "pulumi.com/skipAwait": "true"
        }  # fmt: skip
        return k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=self._meta("server", app.app_name, annotations),
            spec=service_spec(app, self._args.serving),
            opts=self._k8s,
        )

    def _metrics_service(self) -> k8s.core.v1.Service:
        app = self._args.app
        return k8s.core.v1.Service(
            f"{self._name}-metrics",
            metadata=self._meta("metrics", metrics_service_name(app), metrics_service_annotations()),
            spec=metrics_service_spec(app),
            opts=self._k8s,
        )

    def _scrape_objects(self) -> None:
        """Tell the cluster's own collector to scrape the servers and the trainer (mlstack/monitoring.py);
        nothing where it discovers them by annotation."""
        app, scrape_by = self._args.app, self._args.target.scrape_by
        server, trainer = monitoring.SERVER_SCRAPE_SECONDS, monitoring.TRAINER_SCRAPE_SECONDS
        scrapes = {
            # The servers through their metrics Service where the collector reads Services, else their pods.
            "server": monitoring.service_scrape_object(scrape_by, selector(app, "metrics"), METRICS_ENDPOINT, server)
            or monitoring.scrape_object(scrape_by, selector(app, "server"), METRICS_ENDPOINT, server),
            # The trainer has no Service: its pods.
            "trainer": monitoring.scrape_object(scrape_by, selector(app, "trainer"), METRICS_ENDPOINT, trainer),
        }
        for role, scrape in scrapes.items():
            if scrape is None:
                continue
            k8s.apiextensions.CustomResource(
                f"{self._name}-{role}-scrape",
                api_version=scrape.api_version,
                kind=scrape.kind,
                metadata=self._meta("metrics", f"{app.app_name}-{role}"),
                spec=scrape.spec,
                opts=self._k8s,
            )

    def _certificate_names(self, service: k8s.core.v1.Service) -> pulumi.Output[CertificateNames]:
        """The names the server certificate carries: the load balancer's addresses where the cloud gives
        some, ``localhost`` for port-forwards, the Service's in-cluster names."""
        external = self._args.target.external_load_balancer
        return pulumi.Output.all(service.metadata.name, service.metadata.namespace, service.status).apply(
            lambda values: certificate_names(
                values[0], values[1], load_balancer_addresses(values[2]) if external else ()
            )
        )

    def _server_certificate(self, service: k8s.core.v1.Service) -> tuple[ServerCertificate, pulumi.Output[str] | None]:
        """The certificate the server presents, and the CA that signed it (None: the user's own)."""
        if self._args.server_certificate is not None:
            return self._args.server_certificate, None
        names = self._certificate_names(service)
        ca_key, ca = self._certificate_authority()
        key = self._private_key("server-key")
        request = tls.CertRequest(
            f"{self._name}-server-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=self._args.app.app_name, organization=PART_OF),
            dns_names=names.apply(lambda n: list(n.dns_names)),
            ip_addresses=names.apply(lambda n: list(n.ip_addresses)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        certificate = tls.LocallySignedCert(
            f"{self._name}-server-certificate",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            allowed_uses=list(SERVER_USES),
            # `pulumi up` replaces it once inside the last SERVER_EARLY_RENEWAL_HOURS of its life
            # (mlstack/tls.py says how), and the new certificate rolls the pods (the digest annotation).
            validity_period_hours=SERVER_VALIDITY_HOURS,
            early_renewal_hours=SERVER_EARLY_RENEWAL_HOURS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # pulumi-tls already marks private_key_pem secret (additional_secret_outputs); said again here,
        # where the key leaves for the Secret, so that no change upstream can unwrap it.
        served = ServerCertificate(
            certificate=certificate.cert_pem, private_key=pulumi.Output.secret(key.private_key_pem)
        )
        return served, ca.cert_pem

    def _private_key(self, suffix: str) -> tls.PrivateKey:
        return tls.PrivateKey(
            f"{self._name}-{suffix}",
            algorithm=KEY_ALGORITHM,
            ecdsa_curve=KEY_CURVE,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _certificate_authority(self) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        """The stack's own CA: its key, and its self-signed certificate, which the stack exports."""
        key = self._private_key("ca-key")
        ca = tls.SelfSignedCert(
            f"{self._name}-ca",
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{self._args.app.app_name} CA", organization=PART_OF),
            allowed_uses=list(CA_USES),
            # Renewed like the server's certificate (mlstack/tls.py); a new CA replaces the server
            # certificate it signs, and clients must fetch caCertificate again.
            validity_period_hours=CA_VALIDITY_HOURS,
            early_renewal_hours=CA_EARLY_RENEWAL_HOURS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key, ca

    def _tls_secret(self, certificate: ServerCertificate) -> k8s.core.v1.Secret:
        """The certificate and key as a kubernetes.io/tls Secret, auto-named and immutable: a new
        certificate makes a new Secret (and the pods move to it) instead of changing one under them.
        pulumi-kubernetes replaces an immutable Secret on any change, whatever the provider's
        enableSecretMutable option (CHANGELOG 4.18.0)."""
        return k8s.core.v1.Secret(
            f"{self._name}-tls",
            metadata=self._meta("tls"),
            type=TLS_SECRET_TYPE,
            immutable=True,
            string_data={
                TLS_SECRET_CERTIFICATE: certificate.certificate,
                TLS_SECRET_PRIVATE_KEY: certificate.private_key,
            },
            opts=self._k8s,
        )

    def _autoscaling(self, deployment: k8s.apps.v1.Deployment) -> None:
        """KEDA scales the servers (mlstack/autoscaling.py); the disruption budget keeps drains gentle."""
        app, serving, scaler = self._args.app, self._args.serving, self._args.target.autoscaler
        source = scaler.source
        # KEDA's CRDs, its admission webhook and the grants its operator queries with come first.
        after_keda = pulumi.ResourceOptions.merge(self._k8s, pulumi.ResourceOptions(depends_on=list(scaler.ready)))
        authentication = None
        if serving.scale_on == "in-flight" and source.pod_identity is not None:
            authentication = f"{app.app_name}-server-metrics"
            k8s.apiextensions.CustomResource(
                f"{self._name}-scaler-authentication",
                api_version=autoscaling.KEDA_API_VERSION,
                kind=autoscaling.TRIGGER_AUTHENTICATION_KIND,
                metadata=self._meta("server", authentication),
                spec=autoscaling.trigger_authentication_spec(source.pod_identity),
                opts=after_keda,
            )
        scrape_by = self._args.target.scrape_by
        # The series labels and the address may be outputs (GKE's cluster name, AKS's workspace endpoint).
        resolved = pulumi.Output.all(
            deployment.metadata.name, source.server_address, pulumi.Output.all(**dict(source.series_labels))
        )
        k8s.apiextensions.CustomResource(
            f"{self._name}-scaler",
            api_version=autoscaling.KEDA_API_VERSION,
            kind=autoscaling.SCALED_OBJECT_KIND,
            metadata=self._meta(
                "server", f"{app.app_name}-server", annotations={autoscaling.TRANSFER_HPA_OWNERSHIP: "true"}
            ),
            spec=resolved.apply(
                lambda v: autoscaling.scaled_object_spec(
                    v[0],
                    hpa_name=server_hpa_name(app),
                    replicas=serving.replicas,
                    max_replicas=serving.max_replicas,
                    trigger=scaling_trigger(serving, app.namespace, scrape_by, str(v[1]), dict(v[2])),
                    authentication=authentication,
                )
            ),
            opts=after_keda,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-disruption-budget",
            metadata=self._meta("server", f"{app.app_name}-server"),
            spec=disruption_budget_spec(app),
            opts=self._k8s,
        )

    def _url(self, service: k8s.core.v1.Service) -> tuple[pulumi.Output[str], str | None]:
        """The service URL, and the port-forward that makes it reachable where there is no external IP."""
        args = self._args
        port = args.serving.service_port
        if args.target.external_load_balancer:
            return service.status.apply(lambda status: load_balancer_url(status, port)), None
        forward = port_forward_command(args.app, port, args.kube_context)
        return pulumi.Output.from_input(f"https://localhost:{LOCAL_PORT}"), forward
