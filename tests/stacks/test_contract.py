"""The infra side of the contracts, run for real: what each shipped stack's pods are given is what the
trainer, the publisher and the server accept.

For every shipped stack, the training Job's container environment (docs/trainer-contract.md) is given
to the digits example, run as its image runs it (``python -m digits``, its ENTRYPOINT); then the
publish Job's exact command runs the publisher on what it wrote; then the server's own settings reader
and model loader read the Deployment's environment and load the version published. A gate the model
cannot meet makes the publish step exit EXIT_GATE, which fails its Job at once and `pulumi up` with it.

What differs from a pod is replaced, and nothing else: the store and the scratch directory are
temporary directories (every path under them rerooted), the device is the CPU (this machine has no
GPU: tests/examples covers MLAPP_DEVICE=cuda), the trainer's metrics port is a free one and it lingers
for no collector. The app side of the server's contract (its Dockerfile and code against mlapp.contract):
tests/app/test_app_contract.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from mlapp import contract, store
from mlapp import settings as app_settings
from mlapp.gate import Gate
from mlapp.serve.model import load_model
from tests import pods
from tests.support import DEPLOYMENT, JOB, SECRET, STACKS, TRAIN, SharedRun, container
from tools import harness

# A gate no accuracy meets.
IMPOSSIBLE: Final = {"gateThreshold": "1.01"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_trains_the_publisher_publishes_and_the_server_loads_what_each_stack_gives_them(
    shared_run: SharedRun, stack: str, tmp_path: Path
) -> None:
    result = shared_run(stack, secrets={"basicAuthPassword": "a-long-enough-password"})
    strict = shared_run(stack, {**IMPOSSIBLE})  # the same stack but for its gate
    version = result.exports["modelVersion"]
    here = pods.Here(tmp_path)
    trained = here.trainer_env(result)
    command = here.trainer_command(result, pods.image_command(pods.DIGITS), trained)
    assert command == ["python", "-m", "digits"], "the shipped stacks run the digits image's own ENTRYPOINT"
    done = pods.run(command, pods.process_env(trained, pods.DIGITS))
    assert done.returncode == contract.EXIT_OK, (
        f"the training Job would fail ({done.returncode}):\n{done.stdout}{done.stderr}"
    )
    run = Path(trained[contract.ENV_OUTPUT_DIR])
    assert run == store.run_dir(here.models, "digits", version)
    assert (run / contract.TRAINER_MODEL_FILE).is_file(), "the trainer wrote no model"
    assert (run / contract.TRAINER_METRICS_FILE).is_file(), "the trainer wrote no metrics"
    published = store.version_dir(here.models, "digits", version)
    assert not published.exists(), "the trainer publishes nothing: the publish step does"

    # A gate the model cannot meet: the same version (the gate is no part of it), refused.
    assert strict.exports["modelVersion"] == version
    refused = here.publish(strict)
    assert refused.returncode == contract.EXIT_GATE, f"exit {refused.returncode}:\n{refused.stderr}"
    assert not published.exists(), "a model under the gate was published"

    done = here.publish(result)
    assert done.returncode == contract.EXIT_OK, f"the publish Job would fail ({done.returncode}):\n{done.stderr}"
    metadata = store.verify(published)
    assert metadata["version"] == version
    # Judged by the gate the trainer was told, on the metrics it wrote.
    judged = metadata["gate"]
    assert Gate(judged["metric"], judged["direction"], judged["threshold"]) == Gate.from_env(trained)
    assert judged["value"] == metadata["metrics"][judged["metric"]] >= judged["threshold"]
    assert metadata["producer"] == {"trainer_image": container(result.one(JOB, TRAIN))["image"]}
    assert not run.exists(), "the run's outputs outlived their publishing"
    assert not store.checkpoint_dir(here.models, "digits", version).exists()
    # Published already: a retried publish Job succeeds at once.
    assert here.publish(result).returncode == contract.EXIT_OK

    # The server's own reader and loader, on the Deployment's environment and mounts.
    deployment = result.one(DEPLOYMENT)
    server = container(deployment)
    mounted = {**here.mounted, **pods.mount_files(result, deployment, tmp_path / "pod")}
    env = {name: pods.rerooted(value, mounted) for name, value in pods.pod_env(result, server).items()}
    settings = app_settings.from_env(env)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert settings.port == ports[contract.PORT_NAME]
    assert settings.metrics_port == ports[contract.METRICS_PORT_NAME]
    # TLS from the files the pod mounts from the kubernetes.io/tls Secret, never plain HTTP.
    assert not settings.plain_http
    assert settings.tls_cert_file is not None
    assert settings.tls_key_file is not None
    tls_secret = harness.manifest(result.one(SECRET, "-tls"))["stringData"]
    assert settings.tls_cert_file.read_text(encoding="utf-8") == tls_secret["tls.crt"]
    assert settings.tls_key_file.read_text(encoding="utf-8") == tls_secret["tls.key"]
    assert (settings.username, settings.password) == ("mlstack", "a-long-enough-password")
    assert (settings.model_name, settings.model_version) == ("digits", version)
    assert settings.labels_file is None, "no modelLabels: the model's own published labels are served"
    model = load_model(settings, None)
    assert (model.name, model.version) == ("digits", version)
    assert model.labels == metadata["labels"]
