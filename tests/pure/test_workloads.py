"""The workloads' pure builders, called without mocks: what each pod spec, Service and autoscaler says.

The relationships between the objects once created (names, dependencies, the
provider) are checked under mocks in tests/components/test_workloads.py.
"""

from __future__ import annotations

from dataclasses import replace

import pulumi_kubernetes as k8s
import pytest

from components import workloads
from components.target import GPU_RESOURCE, CsiVolume, ModelStore, PodPlacement, StorageClaim, pod_placement
from mlapp import contract
from tests.args import APP, GPU, SERVING, SPOT_TOLERATION, TRAINER_IMAGE, TRAINING, FakeTarget, workloads_args
from tests.support import tolerates_gpu_taint

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


def job_pod(target: FakeTarget) -> k8s.core.v1.PodSpecArgs:
    return workloads.training_job_spec(workloads_args(target), REFS, ["--version", "v1"]).template.spec


def server_spec(target: FakeTarget, refs: workloads.PodRefs = REFS) -> k8s.apps.v1.DeploymentSpecArgs:
    return workloads.server_deployment_spec(workloads_args(target), refs, "digits-labels", "digits-auth", TLS_REFS)


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
    # The gate decides whether a model ships, not what it is.
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, min_accuracy=0.5)) == base
    assert workloads.model_version(TRAINER_IMAGE, replace(TRAINING, backoff_limit=5)) == base


def test_the_selector_picks_one_component_of_one_instance() -> None:
    server = workloads.selector(APP, "server")
    assert server.items() <= workloads.labels(APP, "server").items()
    assert not server.items() <= workloads.labels(APP, "trainer").items(), "it would select the training pod"
    assert workloads.labels(APP, "server")["app.kubernetes.io/managed-by"] == "pulumi"


def test_the_env_points_the_app_at_its_port_model_store_and_labels_file() -> None:
    env = workloads.app_env(APP)
    assert env[contract.ENV_PORT] == str(contract.PORT)
    assert env[contract.ENV_MODEL_DIR] == contract.MODEL_MOUNT
    assert env[contract.ENV_LABELS_FILE] == f"{contract.LABELS_DIR}/{contract.LABELS_FILE_NAME}"
    assert env[contract.ENV_MODEL_NAME] == "mnist"
    assert workloads.labels_file(APP) == "zero\none\n"


def test_trainer_and_server_run_as_two_service_accounts_a_cloud_target_grants_apart() -> None:
    assert (APP.trainer_service_account, APP.server_service_account) == ("digits-trainer", "digits-server")


def test_each_pod_runs_as_its_role_s_service_account() -> None:
    """Finding: on GKE one identity served both, so the internet-facing server could write models."""
    args = workloads_args(FakeTarget())
    job = workloads.training_job_spec(args, REFS, ["--epochs", "1"])
    deployment = workloads.server_deployment_spec(args, REFS, "labels", "auth", TLS_REFS)
    assert job.template.spec.service_account_name == "digits-trainer"
    assert deployment.template.spec.service_account_name == "digits-server"


@pytest.mark.parametrize(("gpu", "device"), [(True, "cuda"), (False, "cpu")])
def test_trainer_asks_for_cuda_exactly_when_the_pod_requests_a_gpu(gpu: bool, device: str) -> None:
    args = workloads.trainer_args(APP, TRAINING, "v1", gpu)
    assert args[args.index("--device") + 1] == device
    assert args[args.index("--model-dir") + 1] == contract.MODEL_MOUNT
    assert args[args.index("--min-accuracy") + 1] == "0.9"
    assert args[args.index("--version") + 1] == "v1"


# --- the training Job -------------------------------------------------------------------


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
    spec = workloads.training_job_spec(workloads_args(FakeTarget()), REFS, [])
    assert (spec.backoff_limit, spec.active_deadline_seconds) == (2, 1800)
    assert spec.template.spec.restart_policy == "Never"
    assert spec.ttl_seconds_after_finished is None, "a Job collected behind Pulumi's back would retrain"
    fail, ignore = spec.pod_failure_policy.rules
    assert (fail.action, fail.on_exit_codes.container_name) == ("FailJob", contract.TRAINER_CONTAINER)
    assert fail.on_exit_codes.values == [contract.EXIT_GATE]
    assert spec.template.spec.containers[0].name == contract.TRAINER_CONTAINER
    assert (ignore.action, ignore.on_pod_conditions[0].type) == ("Ignore", "DisruptionTarget")


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
    assert f"{mount.mount_path}/{item.path}" == workloads.app_env(APP)[contract.ENV_LABELS_FILE]
    assert item.key == contract.LABELS_FILE_NAME


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


def test_autoscaler_and_disruption_budget_cover_the_deployment() -> None:
    hpa = workloads.autoscaler_spec(SERVING, "digits-server")
    assert (hpa.scale_target_ref.kind, hpa.scale_target_ref.name) == ("Deployment", "digits-server")
    assert (hpa.min_replicas, hpa.max_replicas) == (2, 6)
    assert hpa.metrics[0].resource.target.average_utilization == 60
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
    job = workloads.training_job_spec(workloads_args(target), refs, []).template
    server = server_spec(target, refs).template
    assert server.metadata.annotations == {
        "gke-gcsfuse/volumes": "true",
        workloads.CERTIFICATE_DIGEST_ANNOTATION: TLS_REFS.certificate_sha256,
    }, "the store's pod annotations and the certificate's digest, side by side"
    for template, read_only in ((job, False), (server, True)):
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
    curl = workloads.curl_command("https://203.0.113.10", "alice", None, "digits-ca.pem")
    assert curl.startswith("pulumi stack output caCertificate > digits-ca.pem && curl --cacert digits-ca.pem ")
    assert '-u "alice:$(pulumi stack output basicAuthPassword --show-secrets)"' in curl
    assert curl.endswith("https://203.0.113.10/predict")
    local = workloads.curl_command("https://localhost:8443", "alice", forward, "digits-ca.pem")
    assert local.startswith(f"({forward} &) && sleep 3 && pulumi stack output caCertificate > digits-ca.pem")
    assert workloads.ca_file_name(APP) == "digits-ca.pem"


def test_curl_trusts_the_system_store_for_a_certificate_the_user_brought() -> None:
    curl = workloads.curl_command("https://ml.example.com", "alice", None, None)
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
