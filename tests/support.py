"""What every level of the tests shares, written once: the shipped stacks, the run types,
a workload's pod spec and the toleration matcher (the policy pack's own).

The fixtures that run stacks are in ``tests/conftest.py``; the arguments the pure
and component tests build components from, in ``tests/args.py``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Protocol

import pytest
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from policy import rules as policy_rules
from tools import harness

STACKS: Final = ("local", "dev", "gke")  # every shipped Pulumi.<stack>.yaml
STACK_CLOUDS: Final = {"local": "local", "dev": "azure", "gke": "gcp"}  # each one's mlstack:cloud

JOB: Final = "kubernetes:batch/v1:Job"
# The two Jobs by their names' ends: the training Job, then the publish Job.
TRAIN: Final = "-train"
PUBLISH: Final = "-publish"
NETWORK_POLICY: Final = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT: Final = "kubernetes:apps/v1:Deployment"
DAEMONSET: Final = "kubernetes:apps/v1:DaemonSet"
SERVICE: Final = "kubernetes:core/v1:Service"
SECRET: Final = "kubernetes:core/v1:Secret"
CONFIGMAP: Final = "kubernetes:core/v1:ConfigMap"
PVC: Final = "kubernetes:core/v1:PersistentVolumeClaim"
SERVICE_ACCOUNT: Final = "kubernetes:core/v1:ServiceAccount"
K8S_PROVIDER: Final = "pulumi:providers:kubernetes"
IMAGE: Final = "docker-build:index:Image"


class RunStack(Protocol):
    """Run the whole program for a stack under mocks: ``run_stack("gke", overrides={"replicas": 3})``."""

    def __call__(
        self,
        stack: str,
        overrides: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        mocks: harness.StackMocks | None = None,
    ) -> harness.StackRun: ...


class SharedRun(Protocol):
    """A whole-stack run shared by every test that asks for the same stack and config: read it, never change it."""

    def __call__(
        self, stack: str, overrides: Mapping[str, Any] | None = None, secrets: Mapping[str, str] | None = None
    ) -> harness.StackRun: ...


class StackProblems(Protocol):
    """The config problems of a stack with overrides, each as printed: ``stack_problems("gke", trainerGpus=2)``."""

    def __call__(self, stack: str, **overrides: Any) -> list[str]: ...


class CountingMocks(harness.StackMocks):
    """The default mocks, recording every resource the program creates (to prove it created none)."""

    def __init__(self) -> None:
        default = harness.default_mocks()
        super().__init__(outputs=default.outputs, calls=default.calls)
        self.created: list[str] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(f"{args.typ}::{args.name}")
        return super().new_resource(args)


# --- reading workloads ----------------------------------------------------------------


def pod_spec(workload: harness.Registration) -> dict[str, Any]:
    """The pod spec of a Job, Deployment or DaemonSet as applied, found where the policy pack finds it."""
    spec = policy_rules.pod_spec(workload.type, harness.manifest(workload))
    assert spec is not None, f"{workload.type} {workload.name} holds no pod spec"
    return dict(spec)


def container(workload: harness.Registration) -> dict[str, Any]:
    """The one container of a workload's pods."""
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload.name}: expected one container, found {len(containers)}"
    found: dict[str, Any] = containers[0]
    return found


def plain_strings(value: Any) -> list[str]:
    """Every string in a wire value (a registration's inputs or outputs) that is not inside a secret marker."""
    if harness.is_secret_value(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def pod_template_annotations(workload: harness.Registration) -> dict[str, Any]:
    annotations: dict[str, Any] = harness.manifest(workload)["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations


def tolerates_gpu_taint(tolerations: list[dict[str, Any]] | None) -> bool:
    """Whether a pod with ``tolerations`` lands on a node with the GPU taint: the policy pack's own rule."""
    return any(policy_rules.tolerates_gpu_taint(t) for t in tolerations or [])


def kubeconfig_document(current: str | None, *contexts: str) -> str:
    """A kubeconfig with one cluster and one user per context, each user holding ``secret-of-<context>``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": current,
            "contexts": [{"name": n, "context": {"cluster": f"{n}-cluster", "user": f"{n}-user"}} for n in contexts],
            "clusters": [{"name": f"{n}-cluster", "cluster": {"server": f"https://{n}:6443"}} for n in contexts],
            "users": [{"name": f"{n}-user", "user": {"token": f"secret-of-{n}"}} for n in contexts],
        }
    )


# --- a certificate and key, as a user brings them in secret config ----------------------------


def certificate_and_key(name: str = "ml.example.com") -> tuple[str, str]:
    """A self-signed ECDSA certificate for ``name`` and its unencrypted PKCS#8 key, both PEM (cryptography)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


# --- the policy pack, in its own virtualenv ------------------------------------------------

# The pack runs in its own venv, as the CLI runs it (policy/requirements.txt): pulumi-policy
# pins protobuf 5.29, which the app's onnx cannot share. `make test` creates policy/venv.
POLICY_PYTHON: Final = harness.ROOT / os.environ.get("MLSTACK_POLICY_PYTHON", "policy/venv/bin/python")


def policy_python() -> Path:
    """The pack's own interpreter; fails the test, saying how to get it, when it is missing."""
    if not POLICY_PYTHON.exists():
        pytest.fail(f"{POLICY_PYTHON} is missing: `make test` creates policy/venv from policy/requirements.txt")
    return POLICY_PYTHON


def in_pack_venv(script: str, payload: Any = None) -> Any:
    """Run ``script`` with the pack's own interpreter (repository root on the path); JSON in, JSON out."""
    done = subprocess.run(
        [str(policy_python()), "-c", textwrap.dedent(script)],
        input=json.dumps(payload), capture_output=True, text=True, cwd=harness.ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"the pack's venv failed:\n{done.stderr}"
    return json.loads(done.stdout)


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` answering on a free loopback port, each request in a thread of its own; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll: shutdown() waits for the loop to notice it, half a second by default.
    thread = threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.01), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
