"""The workloads' pure builders, called without mocks: what each pod spec, Service and autoscaler says.

The relationships between the objects once created (names, dependencies, the
provider) are checked under mocks in tests/components/test_workloads.py.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pulumi_kubernetes as k8s
import pytest

from components import workloads
from components.target import GPU_RESOURCE, CsiVolume, ModelStore, PodPlacement, StorageClaim, pod_placement
from mlapp import contract
from mlapp.gate import Gate
from tests.args import APP, GPU, SERVING, SPOT_TOLERATION, TRAINER_IMAGE, TRAINING, FakeTarget, workloads_args
from tests.support import tolerates_gpu_taint

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "trainer-contract.md"

REFS = workloads.PodRefs(
    trainer_account="digits-trainer",
    server_account="digits-server",
    env_config="digits-env-1",
    model_claim="digits-models",
    model_version="v1",
)
TLS_REFS = workloads.TlsRefs(secret_name="digits-tls-1", certificate_sha256="ab" * 32)
CSI_STORE = ModelStore(
    csi=CsiVolume(driver="gcsfuse.csi.storage.gke.io", volume_attributes={"bucketName": "models-bucket"}),
    pod_annotations={"gke-gcsfuse/volumes": "true"},
    needs_service_account_token=True,
)


def tolerations(spec: k8s.core.v1.PodSpecArgs) -> list[dict[str, str | None]]:
    return [
        {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect} for t in spec.tolerations or []
    ]


def job_spec(target: FakeTarget, **changes: object) -> k8s.batch.v1.JobSpecArgs:
    args = workloads_args(target, **changes)
    return workloads.training_job_spec(args, REFS, workloads.trainer_env(args, "v1", TRAINER_IMAGE))


def job_pod(target: FakeTarget) -> k8s.core.v1.PodSpecArgs:
    return job_spec(target).template.spec


def env_of(target: FakeTarget, **changes: object) -> dict[str, k8s.core.v1.EnvVarArgs]:
    """The trainer's environment by name; a name set twice fails."""
    env = workloads.trainer_env(workloads_args(target, **changes), "v1", TRAINER_IMAGE)
    by_name = {var.name: var for var in env}
    assert len(by_name) == len(env), f"a variable is set twice: {[v.name for v in env]}"
    return by_name


def documented_variables(section: str) -> set[str]:
    """The variables docs/trainer-contract.md names in a section (the first column of its table, or its text)."""
    text = CONTRACT.read_text(encoding="utf-8")
    body = text.split(f"\n{section}\n", 1)[1]
    body = re.split(r"\n#{2,3} ", body, maxsplit=1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    cells = [row.split("|")[1] for row in rows] if rows else [body]
    return {name for cell in cells for name in re.findall(r"`((?:MLAPP|PET)_[A-Z_]+|HOME)", cell)}


def publish_spec(target: FakeTarget, **changes: object) -> k8s.batch.v1.JobSpecArgs:
    args = workloads_args(target, **changes)
    return workloads.publish_job_spec(args, REFS, workloads.publish_command(args.app, args.training, "v1"))


def server_spec(
    target: FakeTarget, refs: workloads.PodRefs = REFS, labels: str | None = "digits-labels"
) -> k8s.apps.v1.DeploymentSpecArgs:
    return workloads.server_deployment_spec(workloads_args(target), refs, labels, "digits-auth", TLS_REFS)


def server_pod(target: FakeTarget) -> k8s.core.v1.PodSpecArgs:
    return server_spec(target).template.spec


# --- versions, labels, env --------------------------------------------------------------


def test_model_version_follows_what_produced_the_model() -> None:
    base = workloads.model_version(TRAINER_IMAGE, TRAINING)
    assert workloads.model_version(TRAINER_IMAGE, TRAINING) == base, "not deterministic"
    assert workloads.model_version("registry.example.com/ml/trainer:1.1", TRAINING) != base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, epochs=4)) != base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, seed=8)) != base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, learning_rate=0.02)) != base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, batch_size=64)) != base
    command = replace(TRAINING, command=("python", "train.py"))
    assert workloads.model_version(TRAINER_IMAGE, command) != base, "the command is what the trainer runs"
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, command=("python", "train.py", "--x"))) != (
        workloads.model_version(TRAINER_IMAGE, command)
    )
    # The gate decides whether a model ships, not what it is.
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, gate=Gate("accuracy", "maximize", 0.5))) == base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, backoff_limit=5)) == base
    assert re.fullmatch(r"v[0-9a-f]{12}", base), base


def test_the_selector_picks_one_component_of_one_instance() -> None:
    server = workloads.selector(APP, "server")
    assert server.items() <= workloads.labels(APP, "server").items()
    assert not server.items() <= workloads.labels(APP, "trainer").items(), "it would select the training pod"
    assert workloads.labels(APP, "server")["app.kubernetes.io/managed-by"] == "pulumi"


def test_the_servers_config_points_it_at_its_port_model_store_and_the_stacks_labels() -> None:
    env = workloads.server_config(APP)
    assert env[contract.ENV_PORT] == str(contract.PORT)
    assert env[contract.ENV_MODEL_DIR] == contract.MODEL_MOUNT
    assert env[contract.ENV_LABELS_FILE] == f"{contract.LABELS_DIR}/{contract.LABELS_FILE_NAME}"
    assert env[contract.ENV_MODEL_NAME] == "digits"
    assert workloads.labels_file(APP) == "zero\none\n"


def test_without_the_stacks_labels_the_server_is_pointed_at_no_labels_file() -> None:
    """The model's own published labels are served: no file of the stack's replaces them."""
    env = workloads.server_config(replace(APP, model_labels=()))
    assert contract.ENV_LABELS_FILE not in env
    assert env[contract.ENV_MODEL_NAME] == "digits"


def test_trainer_and_server_run_as_two_service_accounts_a_cloud_target_grants_apart() -> None:
    assert (APP.trainer_service_account, APP.server_service_account) == ("digits-trainer", "digits-server")


def test_each_pod_runs_as_its_role_s_service_account() -> None:
    """Finding: on GKE one identity served both, so the internet-facing server could write models."""
    args = workloads_args(FakeTarget())
    deployment = workloads.server_deployment_spec(args, REFS, "labels", "auth", TLS_REFS)
    assert job_pod(FakeTarget()).service_account_name == "digits-trainer"
    assert deployment.template.spec.service_account_name == "digits-server"
    # The publisher writes the store: the trainer's identity, the one a cloud grants write access.
    assert publish_spec(FakeTarget()).template.spec.service_account_name == "digits-trainer"


# --- the trainer's environment: the trainer contract ------------------------------------


def test_the_trainers_environment_is_the_contracts_table_and_nothing_else() -> None:
    documented = documented_variables("## Environment")
    assert contract.ENV_OUTPUT_DIR in documented, f"the table was not read: {documented}"
    assert set(env_of(FakeTarget())) == documented, "docs/trainer-contract.md, Environment"
    # On a GPU target, the target's CUDA runtime variables come with it.
    assert set(env_of(FakeTarget(gpu=GPU))) == documented | set(GPU.container_env)


def test_the_trainers_environment_holds_the_stacks_values() -> None:
    env = {name: var.value for name, var in env_of(FakeTarget()).items()}
    store = contract.MODEL_MOUNT
    assert env[contract.ENV_OUTPUT_DIR] == contract.run_path(store, "digits", "v1") == "/models/digits/.runs/v1"
    assert env[contract.ENV_CHECKPOINT_DIR] == contract.checkpoint_path(store, "digits", "v1")
    assert env[contract.ENV_MODEL_RECORD] == contract.record_path(store, "digits", "v1")
    assert env[contract.ENV_MODEL_RECORD] == "/models/digits/v1/metadata.json"
    assert (env[contract.ENV_MODEL_NAME], env[contract.ENV_MODEL_VERSION]) == ("digits", "v1")
    assert (env[contract.ENV_EPOCHS], env[contract.ENV_BATCH_SIZE]) == ("3", "32")
    assert (env[contract.ENV_LEARNING_RATE], env[contract.ENV_SEED]) == ("0.01", "7")
    assert Gate.from_env(env) == TRAINING.gate
    assert env[contract.ENV_METRICS_PORT] == str(contract.METRICS_PORT)
    assert int(env[contract.ENV_METRICS_LINGER_SECONDS]) > 0
    assert env[contract.ENV_LOG_LEVEL] == "info"
    assert env[contract.ENV_TRAINER_IMAGE] == TRAINER_IMAGE
    assert env[workloads.HOME] == contract.SCRATCH_DIR, "the root filesystem is read-only"


@pytest.mark.parametrize(("gpu", "device"), [(GPU, "cuda"), (None, "cpu")])
def test_the_trainer_is_told_cuda_exactly_when_the_pod_requests_a_gpu(gpu: object, device: str) -> None:
    target = FakeTarget(gpu=GPU if gpu else None)
    assert env_of(target)[contract.ENV_DEVICE].value == device
    requests_gpu = GPU_RESOURCE in (job_pod(target).containers[0].resources.limits or {})
    assert requests_gpu is (device == "cuda")
    assert device in contract.DEVICES


def test_a_group_learns_its_size_rank_and_master_under_the_contracts_names_and_torchruns() -> None:
    training = replace(TRAINING, nodes=3, gpus=2)
    single, group = env_of(FakeTarget(gpu=GPU)), env_of(FakeTarget(gpu=GPU), training=training)
    added = [name for name in group if name not in single]
    documented = documented_variables("### Several nodes (`trainNodes` > 1)")
    assert set(added) == documented | {contract.ENV_JOB_NAME}, "docs/trainer-contract.md, Several nodes"
    assert set(contract.TORCHRUN_ENV.values()) | {contract.TORCHRUN_MAX_RESTARTS[0]} <= set(added)
    values = {name: group[name].value for name in added}
    assert values[contract.ENV_NUM_NODES] == "3"
    assert values[contract.ENV_GPUS_PER_NODE] == "2"
    assert values[contract.ENV_MASTER_PORT] == str(contract.RENDEZVOUS_PORT)
    service = workloads.ranks_service_name(APP)
    assert values[contract.ENV_MASTER_ADDR] == f"$({contract.ENV_JOB_NAME})-0.{service}"
    rank = group[contract.ENV_NODE_RANK].value_from.field_ref.field_path
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    job_name = group[contract.ENV_JOB_NAME].value_from.field_ref.field_path
    assert job_name == "metadata.labels['batch.kubernetes.io/job-name']"
    # torchrun's variables say the same, from the same sources.
    for ours, torchruns in contract.TORCHRUN_ENV.items():
        assert group[torchruns].value == group[ours].value, torchruns
        assert group[torchruns].value_from == group[ours].value_from, torchruns
    assert values[contract.TORCHRUN_MAX_RESTARTS[0]] == contract.TORCHRUN_MAX_RESTARTS[1] == "0"


def test_a_variable_expands_only_variables_defined_before_it() -> None:
    """Kubernetes expands $(VAR) in a value from the variables earlier in the list only."""
    env = workloads.trainer_env(workloads_args(FakeTarget(gpu=GPU), training=replace(TRAINING, nodes=2)), "v", "i")
    seen: set[str] = set()
    for var in env:
        for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.value or ""):
            assert name in seen, f"{var.name} expands $({name}), which is not defined before it"
        seen.add(var.name)
    assert any("$(" in (var.value or "") for var in env), "nothing expands: the test would prove nothing"


# --- the training Job -------------------------------------------------------------------


def test_the_trainer_runs_its_images_entrypoint_or_the_stacks_command_with_no_args() -> None:
    (trainer,) = job_pod(FakeTarget()).containers
    assert (trainer.command, trainer.args) == (None, None), "the image's ENTRYPOINT/CMD, as the team built it"
    assert trainer.env_from is None, "the contract's environment only"
    (own,) = job_spec(FakeTarget(), training=replace(TRAINING, command=("python", "train.py"))).template.spec.containers
    assert (own.command, own.args) == (["python", "train.py"], None)


def test_gpu_target_puts_the_job_on_the_gpu_pool() -> None:
    pod = job_pod(FakeTarget(gpu=GPU))
    assert pod.node_selector == dict(GPU.node_selector)
    assert tolerates_gpu_taint(tolerations(pod)), tolerations(pod)
    assert {"key": SPOT_TOLERATION.key, "operator": "Equal", "value": "spot", "effect": "NoSchedule"} in (
        tolerations(pod)
    ), "the Job does not tolerate every taint of the pool"
    (trainer,) = pod.containers
    assert trainer.resources.limits[GPU_RESOURCE] == str(TRAINING.gpus)
    env = {e.name: e.value for e in trainer.env}
    assert env["LD_LIBRARY_PATH"] == GPU.container_env["LD_LIBRARY_PATH"], "the target's CUDA env is missing"


def test_cpu_target_asks_for_no_gpu() -> None:
    pod = job_pod(FakeTarget(gpu=None))
    assert pod.node_selector is None
    assert pod.tolerations is None
    assert GPU_RESOURCE not in pod.containers[0].resources.limits
    assert pod_placement(None) == PodPlacement()


def test_training_job_fails_fast_on_the_gate_and_ignores_evictions() -> None:
    spec = job_spec(FakeTarget())
    assert (spec.backoff_limit, spec.active_deadline_seconds) == (2, 1800)
    assert spec.template.spec.restart_policy == "Never"
    assert spec.ttl_seconds_after_finished is None, "a Job collected behind Pulumi's back would retrain"
    fail, ignore = spec.pod_failure_policy.rules
    assert (fail.action, fail.on_exit_codes.container_name) == ("FailJob", contract.TRAINER_CONTAINER)
    assert fail.on_exit_codes.values == [contract.EXIT_GATE]
    assert spec.template.spec.containers[0].name == contract.TRAINER_CONTAINER
    assert (ignore.action, ignore.on_pod_conditions[0].type) == ("Ignore", "DisruptionTarget")


# --- the publish Job ----------------------------------------------------------------------


def test_the_publish_command_runs_the_publisher_on_the_runs_outputs_with_the_gate() -> None:
    command = workloads.publish_command(APP, TRAINING, "v1")
    assert command[:3] == ["python", "-m", "mlapp.publish"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options == {
        "--run": contract.run_path(contract.MODEL_MOUNT, "digits", "v1"),
        "--model-dir": contract.MODEL_MOUNT,
        "--model-name": "digits",
        "--version": "v1",
        "--gate": "accuracy>=0.9",
    }
    minimize = replace(TRAINING, gate=Gate("rmse", "minimize", 0.3))
    assert workloads.publish_command(APP, minimize, "v1")[-1] == "rmse<=0.3"
    # The publisher reads the gate the trainer is told.
    env = {name: var.value for name, var in env_of(FakeTarget(), training=minimize).items()}
    assert Gate.parse(workloads.publish_command(APP, minimize, "v1")[-1]) == Gate.from_env(env)


def test_the_publisher_runs_the_server_image_on_the_system_pool_with_a_serving_pods_resources() -> None:
    spec = publish_spec(FakeTarget(gpu=GPU))
    pod = spec.template.spec
    (publisher,) = pod.containers
    assert publisher.name == contract.PUBLISHER_CONTAINER
    assert publisher.image == workloads_args(FakeTarget()).server_image
    assert publisher.command == workloads.publish_command(APP, TRAINING, "v1")
    assert publisher.args is None
    env = {var.name: var.value for var in publisher.env}
    assert env == {contract.ENV_TRAINER_IMAGE: TRAINER_IMAGE, contract.ENV_LOG_LEVEL: "info"}
    # It loads the model as the server does: the serving pod's requests and limits, and no GPU.
    assert publisher.resources.requests == {"cpu": SERVING.cpu_request, "memory": SERVING.memory_request}
    assert publisher.resources.limits == {"cpu": SERVING.cpu_limit, "memory": SERVING.memory_limit}
    assert (pod.node_selector, pod.tolerations) == (None, None), "it must not wait for, or hold, a GPU node"
    assert pod.restart_policy == "Never"
    assert publisher.security_context == workloads.container_security()
    assert pod.security_context == workloads.pod_security()
    assert spec.template.metadata.labels == workloads.labels(APP, "publisher")


def test_the_publisher_writes_the_store_and_the_scratch_directory_only() -> None:
    pod = publish_spec(FakeTarget()).template.spec
    mounts = {m.mount_path: m for m in pod.containers[0].volume_mounts}
    assert set(mounts) == {contract.MODEL_MOUNT, contract.SCRATCH_DIR}
    assert not mounts[contract.MODEL_MOUNT].read_only, "it publishes into the store"
    volumes = {v.name: v for v in pod.volumes}
    store = volumes[mounts[contract.MODEL_MOUNT].name]
    assert store.persistent_volume_claim.claim_name == REFS.model_claim
    assert not store.persistent_volume_claim.read_only
    assert volumes[mounts[contract.SCRATCH_DIR].name].empty_dir is not None


def test_the_publish_job_fails_at_once_on_the_gate_and_a_broken_contract_and_is_bounded() -> None:
    spec = publish_spec(FakeTarget())
    assert spec.backoff_limit == workloads.PUBLISH_BACKOFF_LIMIT == 2
    assert spec.active_deadline_seconds == workloads.PUBLISH_DEADLINE_SECONDS == 15 * 60
    assert spec.ttl_seconds_after_finished is None
    fail, ignore = spec.pod_failure_policy.rules
    assert (fail.action, fail.on_exit_codes.container_name) == ("FailJob", contract.PUBLISHER_CONTAINER)
    assert fail.on_exit_codes.operator == "In"
    assert fail.on_exit_codes.values == [contract.EXIT_GATE, contract.EXIT_CONTRACT]
    assert (ignore.action, ignore.on_pod_conditions[0].type) == ("Ignore", "DisruptionTarget")
    # `pulumi up` outwaits the Job's own deadline, so it reports the Job's verdict.
    minutes = int(workloads.PUBLISH_TIMEOUT.removesuffix("m"))
    assert minutes * 60 > workloads.PUBLISH_DEADLINE_SECONDS


# --- the serving Deployment, Service, autoscaler ------------------------------------------


def test_serving_never_lands_on_the_gpu_pool() -> None:
    pod = server_pod(FakeTarget(gpu=GPU))
    assert pod.node_selector is None
    assert pod.tolerations is None
    assert GPU_RESOURCE not in pod.containers[0].resources.limits


def test_probes_hit_the_tls_port_over_https_on_the_apps_endpoints() -> None:
    (server,) = server_pod(FakeTarget()).containers
    declared = {p.name: p.container_port for p in server.ports}
    assert declared == {contract.PORT_NAME: contract.PORT, contract.METRICS_PORT_NAME: contract.METRICS_PORT}
    for probe, path in ((server.startup_probe, contract.READY_PATH), (server.readiness_probe, contract.READY_PATH),
                        (server.liveness_probe, contract.LIVE_PATH)):  # fmt: skip
        assert probe.http_get.port == contract.PORT_NAME, f"a probe uses port {probe.http_get.port}, not the TLS port"
        # The server speaks only TLS there: a plain-HTTP probe would fail and the pod never be ready.
        assert probe.http_get.scheme == "HTTPS", f"the probe on {path} is not HTTPS"
        assert probe.http_get.path == path
    # A slow model load must not get the pod killed: startup allows far longer than liveness.
    startup, liveness = server.startup_probe, server.liveness_probe
    assert startup.period_seconds * startup.failure_threshold >= 120
    assert liveness.period_seconds * liveness.failure_threshold < 120


def test_server_resources_come_from_the_serving_spec() -> None:
    (server,) = server_pod(FakeTarget()).containers
    assert server.resources.requests == {"cpu": "250m", "memory": "256Mi"}
    assert server.resources.limits == {"cpu": "1", "memory": "512Mi"}


def test_the_labels_file_is_mounted_where_the_env_points() -> None:
    pod = server_pod(FakeTarget())
    volume = next(v for v in pod.volumes if v.name == "labels")
    (item,) = volume.config_map.items
    mount = next(m for m in pod.containers[0].volume_mounts if m.name == "labels")
    assert volume.config_map.name == "digits-labels"
    assert f"{mount.mount_path}/{item.path}" == workloads.server_config(APP)[contract.ENV_LABELS_FILE]
    assert item.key == contract.LABELS_FILE_NAME


def test_without_the_stacks_labels_nothing_is_mounted_for_them() -> None:
    pod = server_spec(FakeTarget(), labels=None).template.spec
    assert "labels" not in {v.name for v in pod.volumes}
    assert contract.LABELS_DIR not in {m.mount_path for m in pod.containers[0].volume_mounts}


def test_rollout_never_drops_below_the_desired_count() -> None:
    spec = server_spec(FakeTarget())
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_unavailable == 0
    assert spec.replicas == SERVING.replicas


def test_shutdown_follows_the_apps_contract() -> None:
    spec = server_pod(FakeTarget())
    (server,) = spec.containers
    assert spec.termination_grace_period_seconds == contract.GRACE_SECONDS
    assert server.lifecycle.pre_stop.sleep.seconds == contract.PRESTOP_SECONDS
    assert contract.PRESTOP_SECONDS < contract.GRACE_SECONDS, "the preStop pause would use up the grace period"


# --- TLS and metrics on the serving pods ----------------------------------------------------


def test_the_tls_secret_is_mounted_read_only_where_the_env_points() -> None:
    pod = server_pod(FakeTarget())
    (server,) = pod.containers
    volume = next(v for v in pod.volumes if v.name == workloads.TLS_VOLUME)
    assert volume.secret.secret_name == TLS_REFS.secret_name
    files = {item.key: item.path for item in volume.secret.items}
    assert files == {"tls.crt": contract.TLS_CERT_FILE_NAME, "tls.key": contract.TLS_KEY_FILE_NAME}
    assert volume.secret.default_mode & 0o007 == 0, "the key must not be readable by every user of the node"
    mount = next(m for m in server.volume_mounts if m.name == workloads.TLS_VOLUME)
    assert (mount.mount_path, mount.read_only) == (contract.TLS_DIR, True)
    env = {e.name: e.value for e in server.env}
    assert env[contract.ENV_TLS_CERT_FILE] == f"{mount.mount_path}/{files['tls.crt']}"
    assert env[contract.ENV_TLS_KEY_FILE] == f"{mount.mount_path}/{files['tls.key']}"
    assert env[contract.ENV_METRICS_PORT] == str(contract.METRICS_PORT)
    assert not any("PRIVATE KEY" in str(e.value) for e in server.env), "the key itself in the environment"


def test_the_pod_template_carries_the_certificates_digest() -> None:
    template = server_spec(FakeTarget()).template
    assert template.metadata.annotations == {workloads.CERTIFICATE_DIGEST_ANNOTATION: TLS_REFS.certificate_sha256}
    first, second = "-----BEGIN CERTIFICATE-----\nAAAA\n", "-----BEGIN CERTIFICATE-----\nAAAB\n"
    assert workloads.certificate_sha256(first) == workloads.certificate_sha256(first), "not deterministic"
    assert workloads.certificate_sha256(first) != workloads.certificate_sha256(second)
    assert len(workloads.certificate_sha256(first)) == 64


def test_the_public_service_exposes_the_tls_port_and_never_the_metrics_port() -> None:
    service = workloads.service_spec(APP, SERVING)
    assert [p.target_port for p in service.ports] == [contract.PORT_NAME]
    assert all(p.port != contract.METRICS_PORT and p.name != contract.METRICS_PORT_NAME for p in service.ports)


def test_the_public_service_keeps_the_clients_address_for_the_login_throttle() -> None:
    """With "Cluster", every client would share a node's address and one guesser would throttle them all."""
    assert workloads.service_spec(APP, SERVING).external_traffic_policy == "Local"


def test_the_metrics_service_stays_inside_the_cluster_on_the_metrics_port() -> None:
    service = workloads.metrics_service_spec(APP)
    assert service.type == "ClusterIP"
    (port,) = service.ports
    assert (port.name, port.port, port.target_port) == (
        contract.METRICS_PORT_NAME, contract.METRICS_PORT, contract.METRICS_PORT_NAME,
    )  # fmt: skip
    assert service.selector == workloads.selector(APP, "server")
    annotations = workloads.metrics_service_annotations()
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(contract.METRICS_PORT),
        "prometheus.io/path": contract.METRICS_PATH,
        "prometheus.io/scheme": "http",
    }


def test_service_selects_the_serving_pods_on_their_named_port() -> None:
    service = workloads.service_spec(APP, SERVING)
    deployment = server_spec(FakeTarget())
    assert service.selector == deployment.selector.match_labels
    assert service.selector.items() <= deployment.template.metadata.labels.items()
    (port,) = service.ports
    assert port.target_port == contract.PORT_NAME
    assert port.port == SERVING.service_port
    assert service.type == "LoadBalancer"
    assert service.load_balancer_source_ranges == ["203.0.113.0/24"]
    assert workloads.service_spec(APP, replace(SERVING, allowed_source_ranges=())).load_balancer_source_ranges is None


def test_the_disruption_budget_covers_the_servers() -> None:
    pdb = workloads.disruption_budget_spec(APP)
    assert pdb.selector.match_labels == workloads.selector(APP, "server")
    assert pdb.max_unavailable == 1


# --- the model store -------------------------------------------------------------------


def test_a_claim_store_gets_its_claim_with_the_configured_class_and_size() -> None:
    claim = workloads.claim_spec(workloads_args(FakeTarget()))
    assert claim is not None
    assert (claim.access_modes, claim.storage_class_name) == (["ReadWriteMany"], "fast")
    assert claim.resources.requests == {"storage": "5Gi"}
    override = workloads.claim_spec(workloads_args(FakeTarget(), storage_class="premium"))
    assert override is not None
    assert override.storage_class_name == "premium"


def test_a_csi_store_is_mounted_inline_with_its_annotations_and_token() -> None:
    target = FakeTarget(model_store=CSI_STORE)
    assert workloads.claim_spec(workloads_args(target)) is None, "a CSI store needs no claim"
    refs = replace(REFS, model_claim=None)
    args = workloads_args(target)
    job = workloads.training_job_spec(args, refs, []).template
    publish = workloads.publish_job_spec(args, refs, []).template
    server = server_spec(target, refs).template
    assert server.metadata.annotations == {
        "gke-gcsfuse/volumes": "true",
        workloads.CERTIFICATE_DIGEST_ANNOTATION: TLS_REFS.certificate_sha256,
    }, "the store's pod annotations and the certificate's digest, side by side"
    for template, read_only in ((job, False), (publish, False), (server, True)):
        assert template.metadata.annotations["gke-gcsfuse/volumes"] == "true"
        volume = next(v for v in template.spec.volumes if v.name == "models")
        assert volume.csi.driver == "gcsfuse.csi.storage.gke.io"
        assert volume.csi.read_only is read_only
        assert template.spec.automount_service_account_token is True


def test_model_store_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModelStore()
    with pytest.raises(ValueError, match="exactly one"):
        ModelStore(claim=StorageClaim("ReadWriteOnce", None), csi=CsiVolume("x", {}))


# --- exposure ------------------------------------------------------------------------------


def _status(*ingress: k8s.core.v1.outputs.LoadBalancerIngress) -> k8s.core.v1.outputs.ServiceStatus:
    return k8s.core.v1.outputs.ServiceStatus(
        load_balancer=k8s.core.v1.outputs.LoadBalancerStatus(ingress=list(ingress))
    )


def test_load_balancer_url_from_status() -> None:
    status = _status(k8s.core.v1.outputs.LoadBalancerIngress(ip="198.51.100.4"))
    assert workloads.load_balancer_url(status, 443) == "https://198.51.100.4"
    assert workloads.load_balancer_url(status, 8443) == "https://198.51.100.4:8443"
    named = _status(k8s.core.v1.outputs.LoadBalancerIngress(hostname="lb.example.com"))
    assert workloads.load_balancer_url(named, 443) == "https://lb.example.com"
    v6 = _status(k8s.core.v1.outputs.LoadBalancerIngress(ip="2001:db8::4"))
    assert workloads.load_balancer_url(v6, 443) == "https://[2001:db8::4]"
    assert workloads.load_balancer_url(None, 443).startswith("pending")


def test_load_balancer_addresses_from_a_typed_status_or_the_dict_output_all_hands_over() -> None:
    typed = _status(
        k8s.core.v1.outputs.LoadBalancerIngress(ip="198.51.100.4"),
        k8s.core.v1.outputs.LoadBalancerIngress(hostname="lb.example.com"),
    )
    assert workloads.load_balancer_addresses(typed) == ["198.51.100.4", "lb.example.com"]
    plain = {"load_balancer": {"ingress": [{"ip": "198.51.100.4"}, {"hostname": "lb.example.com"}]}}
    assert workloads.load_balancer_addresses(plain) == ["198.51.100.4", "lb.example.com"]
    assert workloads.load_balancer_addresses({"load_balancer": {}}) == []
    assert workloads.load_balancer_addresses(None) == []


def test_port_forward_and_curl_commands() -> None:
    forward = workloads.port_forward_command(APP, 443, "kind-ml")
    assert forward == "kubectl --context kind-ml -n ml port-forward service/digits 8443:443"
    assert workloads.port_forward_command(APP, 443, None) == "kubectl -n ml port-forward service/digits 8443:443"
    curl = workloads.curl_command("https://203.0.113.10", "alice", None, "digits-ca.pem", "iris")
    assert curl.startswith("pulumi stack output caCertificate > digits-ca.pem && curl --cacert digits-ca.pem ")
    assert '-u "alice:$(pulumi stack output basicAuthPassword --show-secrets)"' in curl
    # The model's metadata (Open Inference Protocol v2): any model answers it, not only an image classifier.
    assert curl.endswith(" https://203.0.113.10/v2/models/iris")
    assert "-F " not in curl, "no upload: the model may take no image"
    local = workloads.curl_command("https://localhost:8443", "alice", forward, "digits-ca.pem", "iris")
    assert local.startswith(f"({forward} &) && sleep 3 && pulumi stack output caCertificate > digits-ca.pem")
    assert workloads.ca_file_name(APP) == "digits-ca.pem"


def test_curl_trusts_the_system_store_for_a_certificate_the_user_brought() -> None:
    curl = workloads.curl_command("https://ml.example.com", "alice", None, None, "digits")
    assert "--cacert" not in curl
    assert "caCertificate" not in curl
    assert curl.startswith('curl -u "alice:')


# --- what the workloads refuse ------------------------------------------------------------


def test_more_gpus_than_a_node_carries_is_refused() -> None:
    workloads.check(workloads_args(FakeTarget(gpu=GPU)))
    workloads.check(workloads_args(FakeTarget(gpu=None), training=replace(TRAINING, gpus=8)))  # no GPU: not asked
    with pytest.raises(workloads.WorkloadsError) as caught:
        workloads.check(workloads_args(FakeTarget(gpu=GPU), training=replace(TRAINING, gpus=2)))
    assert str(caught.value).splitlines() == [
        "cannot run the workloads on this cluster (1 problem):",
        "  - mlstack:trainerGpus = 2: a node of the GPU pool carries 1 nvidia-tesla-t4 GPU(s) and a pod cannot "
        "span nodes, so the trainer can request at most 1",
    ]


def test_a_gate_its_written_form_would_change_is_refused() -> None:
    """The publish Job's command carries the gate written out; the trainer is told its threshold in full."""
    gate = Gate("accuracy", "maximize", 0.123456789)
    with pytest.raises(workloads.WorkloadsError) as caught:
        workloads.check(workloads_args(FakeTarget(), training=replace(TRAINING, gate=gate)))
    assert "mlstack:gateThreshold = 0.123456789: has more digits than the gate's written form keeps" in str(
        caught.value
    )
