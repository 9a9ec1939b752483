"""The app's interface: what the images expect of the pods that run them, in one place.

Read by the app (the trainer's exit codes, the server's port and variables),
by the program that deploys it (``components/workloads.py`` and the cloud
targets, which put the model store, the labels file and the GPU pool where the
app looks), by ``tests/app/test_app_contract.py``, which holds ``app/Dockerfile``
to it, and by ``tests/stacks/test_contract.py``, which runs the app on what the
stacks hand it. Pure: no third-party import, so the Pulumi program, the images
and the tests all load it cheaply.
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

# The trainer's exit codes. EXIT_GATE means "trained, but under the accuracy gate":
# the Job fails at once on it instead of retrying a deterministic run.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_GATE: Final = 2
# A rank of a multi-node run that stopped because another rank failed, was stopped or could not be
# reached: the fault is counted on the pod that had it, never again on every pod of the group.
EXIT_PEER: Final = 3

# --- distributed training (trainNodes > 1) -------------------------------------------
# The port the static rendezvous's TCPStore listens on in index 0's pod (torchrun's --master-port).
RENDEZVOUS_PORT: Final = 29500
RENDEZVOUS_PORT_NAME: Final = "rendezvous"
# The Job's own name, given to each of its pods by the downward API, so a pod can name index 0's pod.
ENV_JOB_NAME: Final = "MLAPP_JOB_NAME"

# --- the filesystem ----------------------------------------------------------------

MODEL_MOUNT: Final = "/models"  # the model store: the trainer writes, the server reads
LABELS_DIR: Final = "/etc/mlapp"  # the class labels, from a ConfigMap
LABELS_FILE_NAME: Final = "labels.txt"
# The root filesystem is read-only; this emptyDir is the one writable place (HOME too).
SCRATCH_DIR: Final = "/tmp"  # noqa: S108 - an emptyDir the pod owns
# The server's certificate and key: a kubernetes.io/tls Secret mounted here, under the
# key names that Secret type requires (https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets).
# Not under LABELS_DIR: a volume cannot be mounted inside a read-only ConfigMap volume.
TLS_DIR: Final = "/etc/mlapp-tls"
TLS_CERT_FILE_NAME: Final = "tls.crt"
TLS_KEY_FILE_NAME: Final = "tls.key"

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
ENV_TRAINER_IMAGE: Final = "MLAPP_TRAINER_IMAGE"  # recorded in the model's metadata
