"""The app's interface: what the images expect of the pods that run them, in one place.

Two sides meet here. The server image (``app/``: the model server and the publisher) and the
program that deploys it (``components/workloads.py`` and the cloud targets) agree on ports,
mounts and variables. The training Job and *any* trainer image agree on the trainer contract
(``docs/trainer-contract.md`` says it for people; the ``TRAINER_*`` and ``ENV_*`` names below are
its machine-readable half, and ``tests/app/test_trainer_contract.py`` holds the two together): a
trainer that imports nothing of ours honours it with environment variables, files and exit codes.

Read by the app, by the Pulumi program, and by the tests on both sides. Pure: no third-party
import, so the Pulumi program, the images and the tests all load it cheaply.
"""

from __future__ import annotations

from typing import Final

# --- the process -------------------------------------------------------------------

# The numeric non-root user and group both images run as (app/Dockerfile's USER).
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
APP_UID: Final = 10001

# The server's port inside the pod and the name the pod, probes and Service give it.
# It speaks TLS (HTTPS) unless the server is explicitly told to serve plain HTTP.
PORT: Final = 8080
PORT_NAME: Final = "https"
# The internal port: /metrics and the health endpoints, plain HTTP, never behind the
# LoadBalancer Service (a ClusterIP Service for scrapers exposes it inside the cluster).
METRICS_PORT: Final = 9090
METRICS_PORT_NAME: Final = "metrics"
METRICS_PATH: Final = "/metrics"
# Open Inference Protocol v2 health endpoints: liveness is cheap and constant;
# readiness turns 200 once the model is loaded.
LIVE_PATH: Final = "/v2/health/live"
READY_PATH: Final = "/v2/health/ready"

# The containers' names in the Job and the Deployment (a pod failure policy names one).
TRAINER_CONTAINER: Final = "trainer"
SERVER_CONTAINER: Final = "server"

PUBLISHER_CONTAINER: Final = "publisher"

# Exit codes, the trainer's and the publisher's (docs/trainer-contract.md, "Exit codes"). The Jobs'
# pod failure policies read them (components/workloads.py).
EXIT_OK: Final = 0  # trainer: its outputs are written; publisher: published, or already was
EXIT_ERROR: Final = 1  # anything else: retried, up to the Job's backoff limit
# Under the gate: the publisher's verdict on metrics.json, or a trainer's own. The Job fails at
# once instead of retrying a deterministic run.
EXIT_GATE: Final = 2
# A rank of a multi-node run that stopped because another rank failed, was stopped or could not be
# reached: the fault is counted on the pod that had it, never again on every pod of the group.
EXIT_PEER: Final = 3
# The publisher found the trainer's outputs breaking the contract (no model.onnx, no metrics.json,
# a metrics file that is not a JSON object of numbers, a model ONNX Runtime cannot load): a retry
# of the same trainer would write the same, so the Job fails at once.
EXIT_CONTRACT: Final = 4

# --- distributed training (trainNodes > 1) -------------------------------------------
# The port the static rendezvous's TCPStore listens on in index 0's pod (torchrun's --master-port).
RENDEZVOUS_PORT: Final = 29500
RENDEZVOUS_PORT_NAME: Final = "rendezvous"
# The Job's own name, given to each of its pods by the downward API, so a pod can name index 0's pod.
ENV_JOB_NAME: Final = "MLAPP_JOB_NAME"

# --- the filesystem ----------------------------------------------------------------

MODEL_MOUNT: Final = "/models"  # the model store: the trainer and the publisher write, the server reads
LABELS_DIR: Final = "/etc/mlapp"  # class labels set in the stack's config (modelLabels), from a ConfigMap
LABELS_FILE_NAME: Final = "labels.txt"
# The root filesystem is read-only; this emptyDir is the one writable place (HOME too).
SCRATCH_DIR: Final = "/tmp"  # noqa: S108 - an emptyDir the pod owns
# The server's certificate and key: a kubernetes.io/tls Secret mounted here, under the
# key names that Secret type requires (https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets).
# Not under LABELS_DIR: a volume cannot be mounted inside a read-only ConfigMap volume.
TLS_DIR: Final = "/etc/mlapp-tls"
TLS_CERT_FILE_NAME: Final = "tls.crt"
TLS_KEY_FILE_NAME: Final = "tls.key"
# The basic-auth password: the key of the server's kubernetes.io/basic-auth Secret, mounted as a file here,
# never an environment variable: a process's environment is readable in /proc/<pid>/environ and lands in
# crash reports, while a secret volume "is backed by tmpfs ... never written to non-volatile storage"
# (https://kubernetes.io/docs/concepts/storage/volumes/#secret) and the server reads it once, at start-up.
AUTH_DIR: Final = "/etc/mlapp-auth"
AUTH_PASSWORD_FILE_NAME: Final = "password"  # noqa: S105 - a file's name, not a password

# --- shutdown ------------------------------------------------------------------------
# The pod's termination grace period, the preStop sleep that lets endpoints drop the
# pod before it stops accepting, and the longest the server then drains in-flight
# requests. preStop + drain + SHUTDOWN_MARGIN_SECONDS <= GRACE_SECONDS, so the
# kubelet's SIGKILL never races the drain (tests/app/test_app_contract.py holds it).
GRACE_SECONDS: Final = 30
PRESTOP_SECONDS: Final = 5
DRAIN_SECONDS: Final = 15
SHUTDOWN_MARGIN_SECONDS: Final = 10

# --- the environment ---------------------------------------------------------------

ENV_PORT: Final = "MLAPP_PORT"
ENV_HOST: Final = "MLAPP_HOST"
ENV_MODEL_NAME: Final = "MLAPP_MODEL_NAME"
ENV_MODEL_DIR: Final = "MLAPP_MODEL_DIR"
ENV_MODEL_VERSION: Final = "MLAPP_MODEL_VERSION"
ENV_LABELS_FILE: Final = "MLAPP_LABELS_FILE"
ENV_LOG_LEVEL: Final = "MLAPP_LOG_LEVEL"
ENV_AUTH_USERNAME: Final = "MLAPP_AUTH_USERNAME"
# The file that holds the password (the pods': AUTH_DIR/AUTH_PASSWORD_FILE_NAME), or the password itself
# (`make serve` on a laptop); one or the other.
ENV_AUTH_PASSWORD_FILE: Final = "MLAPP_AUTH_PASSWORD_FILE"  # noqa: S105 - the variable's name, not a password
ENV_AUTH_PASSWORD: Final = "MLAPP_AUTH_PASSWORD"  # noqa: S105 - the variable's name, not a password
ENV_MAX_BODY_BYTES: Final = "MLAPP_MAX_BODY_BYTES"
ENV_MAX_BATCH: Final = "MLAPP_MAX_BATCH"
ENV_METRICS_PORT: Final = "MLAPP_METRICS_PORT"  # the server's, and the trainer's while the Job runs
# How long the trainer keeps serving its metrics after the verdict, for the collector's last scrape.
ENV_METRICS_LINGER_SECONDS: Final = "MLAPP_METRICS_LINGER_SECONDS"
ENV_TLS_CERT_FILE: Final = "MLAPP_TLS_CERT_FILE"
ENV_TLS_KEY_FILE: Final = "MLAPP_TLS_KEY_FILE"
# "1" serves plain HTTP on PORT: for `make serve` on a laptop only, and only when asked.
ENV_PLAIN_HTTP: Final = "MLAPP_PLAIN_HTTP"
ENV_TRAINER_IMAGE: Final = "MLAPP_TRAINER_IMAGE"  # the image the trainer runs as, recorded in the model's metadata
# Where ONNX Runtime runs the served model: "cpu" (the default), or "cuda" (the server image's GPU variant on a
# GPU node, mlstack:serverGpu). A server asked for cuda that cannot use CUDA stays up, answers liveness, and is
# never ready, saying why: it does not serve on the CPU in its place.
ENV_EXECUTION_PROVIDER: Final = "MLAPP_EXECUTION_PROVIDER"
EXECUTION_PROVIDERS: Final = ("cpu", "cuda")

# --- the trainer contract (docs/trainer-contract.md) --------------------------------
# Everything the training Job gives the trainer container, whatever its image. Names only here;
# what each means is the document's. The server's variables above (MLAPP_MODEL_NAME,
# MLAPP_LOG_LEVEL, MLAPP_METRICS_PORT, MLAPP_METRICS_LINGER_SECONDS, MLAPP_TRAINER_IMAGE) are
# given to the trainer too.

# Where the trainer writes what it made (TRAINER_MODEL_FILE, TRAINER_METRICS_FILE, and optionally
# TRAINER_LABELS_FILE and TRAINER_SERVING_FILE): a directory in the model store, read by the
# publisher once the training Job has succeeded.
ENV_OUTPUT_DIR: Final = "MLAPP_OUTPUT_DIR"
# A directory in the model store that outlives the pod, for this version's resumable state.
ENV_CHECKPOINT_DIR: Final = "MLAPP_CHECKPOINT_DIR"
# This version's commit record in the store: when it exists the version is already published, and a
# trainer may exit EXIT_OK at once without training (the publisher checks it again).
ENV_MODEL_RECORD: Final = "MLAPP_MODEL_RECORD"
# "cuda": the pod was given GPUs (train on them, or fail saying why); "cpu": it was not.
ENV_DEVICE: Final = "MLAPP_DEVICE"
DEVICES: Final = ("cuda", "cpu")
# The stack's training parameters (trainEpochs, trainBatchSize, trainLearningRate, trainSeed): a
# trainer reads those that apply to its model. All are part of the model version.
ENV_EPOCHS: Final = "MLAPP_EPOCHS"
ENV_BATCH_SIZE: Final = "MLAPP_BATCH_SIZE"
ENV_LEARNING_RATE: Final = "MLAPP_LEARNING_RATE"
ENV_SEED: Final = "MLAPP_SEED"
# The gate the publisher applies to metrics.json: the metric's name, "maximize" (the value must be at
# least the threshold) or "minimize" (at most), and the threshold. A trainer may read it to stop early.
ENV_GATE_METRIC: Final = "MLAPP_GATE_METRIC"
ENV_GATE_DIRECTION: Final = "MLAPP_GATE_DIRECTION"
ENV_GATE_THRESHOLD: Final = "MLAPP_GATE_THRESHOLD"
GATE_DIRECTIONS: Final = ("maximize", "minimize")
# A multi-node Job (trainNodes > 1): pods, this pod's index, GPUs (ranks) per pod, and where index 0's pod
# hosts the group's rendezvous. The same values reach torchrun through its own PET_* variables, so
# `torchrun train.py` needs no flags (TORCHRUN_ENV).
ENV_NUM_NODES: Final = "MLAPP_NUM_NODES"
ENV_NODE_RANK: Final = "MLAPP_NODE_RANK"
ENV_GPUS_PER_NODE: Final = "MLAPP_GPUS_PER_NODE"
ENV_MASTER_ADDR: Final = "MLAPP_MASTER_ADDR"
ENV_MASTER_PORT: Final = "MLAPP_MASTER_PORT"
# torchrun reads each of its options from PET_<OPTION> when the flag is not given
# (torch/distributed/argparse_util.py, class env: "Get argument values from PET_{dest}"; the options
# in torch/distributed/run.py get_args_parser use action=env). Ours -> torchrun's.
TORCHRUN_ENV: Final = {
    ENV_NUM_NODES: "PET_NNODES",
    ENV_GPUS_PER_NODE: "PET_NPROC_PER_NODE",
    ENV_NODE_RANK: "PET_NODE_RANK",
    ENV_MASTER_ADDR: "PET_MASTER_ADDR",
    ENV_MASTER_PORT: "PET_MASTER_PORT",
}
# torchrun does not restart workers in place: when a rank fails every rank exits, the Job recreates the
# pods, and they resume from the checkpoint.
TORCHRUN_MAX_RESTARTS: Final = ("PET_MAX_RESTARTS", "0")

# The files in MLAPP_OUTPUT_DIR. The model and the metrics are required; the rest optional.
TRAINER_MODEL_FILE: Final = "model.onnx"  # one ONNX file, its tensors inside it (no external data)
TRAINER_METRICS_FILE: Final = "metrics.json"  # a JSON object: metric name -> number
TRAINER_LABELS_FILE: Final = "labels.txt"  # class names, one per line, line i naming class i
# How to serve the model: {"batchable": true|false, "plugin": {"name": ..., ...}} (docs/trainer-contract.md).
TRAINER_SERVING_FILE: Final = "serving.json"

# --- the model store's layout ----------------------------------------------------------
# <store>/<name>/<version>/               a published version (mlapp.store: model file, metadata.json)
# <store>/<name>/.runs/<version>/         a training run's outputs (MLAPP_OUTPUT_DIR)
# <store>/<name>/.checkpoints/<version>/  a training run's resumable state (MLAPP_CHECKPOINT_DIR)
# Names and versions never start with "." (mlapp.store.check_segment), so neither directory is ever
# taken for a version. Both are removed once their version is published.
RUNS_DIR: Final = ".runs"
CHECKPOINTS_DIR: Final = ".checkpoints"
METADATA_FILE_NAME: Final = "metadata.json"


def version_path(store: str, name: str, version: str) -> str:
    """Where a published version lies under the store mounted at ``store`` (a POSIX path)."""
    return f"{store}/{name}/{version}"


def record_path(store: str, name: str, version: str) -> str:
    """The version's commit record (ENV_MODEL_RECORD)."""
    return f"{version_path(store, name, version)}/{METADATA_FILE_NAME}"


def run_path(store: str, name: str, version: str) -> str:
    """The training run's output directory (ENV_OUTPUT_DIR)."""
    return f"{store}/{name}/{RUNS_DIR}/{version}"


def checkpoint_path(store: str, name: str, version: str) -> str:
    """The training run's checkpoint directory (ENV_CHECKPOINT_DIR)."""
    return f"{store}/{name}/{CHECKPOINTS_DIR}/{version}"
