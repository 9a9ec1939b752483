"""MlWorkloads under mocks: the relationships between the objects, not just that they exist."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import workloads
from components.config import ServingConfig, TrainingConfig
from components.target import (
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    CsiVolume,
    GpuScheduling,
    ModelStore,
    StorageClaim,
    Toleration,
)
from tools import harness

APP = workloads.AppSettings(
    namespace="ml", app_name="digits", model_name="mnist", model_labels=("zero", "one"), log_level="info"
)
TRAINING = TrainingConfig(
    epochs=3, batch_size=32, learning_rate=0.01, seed=7, min_accuracy=0.9, backoff_limit=2,
    deadline_seconds=1800, timeout="40m", cpu="1", memory="2Gi", gpus=1,
)  # fmt: skip
SERVING = ServingConfig(
    replicas=2, max_replicas=6, target_cpu_utilization=60, cpu_request="250m", cpu_limit="1",
    memory_request="256Mi", memory_limit="512Mi", service_port=80, allowed_source_ranges=("203.0.113.0/24",),
)  # fmt: skip
GPU = GpuScheduling(
    node_selector={"mlstack.dev/pool": "gpu"},
    tolerations=(
        Toleration(key=GPU_TAINT_KEY, operator="Equal", value=GPU_TAINT_VALUE, effect=GPU_TAINT_EFFECT),
        Toleration(key="kubernetes.azure.com/scalesetpriority", operator="Equal", value="spot", effect="NoSchedule"),
    ),
    gpus_per_node=1,
    gpu_model="nvidia-tesla-t4",
)
TRAINER = "registry.example.com/ml/trainer:1.0"
SERVER = "registry.example.com/ml/server:1.0"


@dataclass
class FakeTarget:
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    registry: None
    gpu: GpuScheduling | None
    model_store: ModelStore
    external_load_balancer: bool


def run_workloads(
    gpu: GpuScheduling | None = None,
    store: ModelStore | None = None,
    external: bool = True,
    built: list[workloads.MlWorkloads] | None = None,
    **changes: Any,
) -> harness.StackRun:
    def program() -> None:
        target = FakeTarget(
            provider=k8s.Provider("cluster", kubeconfig="{}"),
            kubeconfig=pulumi.Output.secret("{}"),
            registry=None,
            gpu=gpu,
            model_store=store or ModelStore(claim=StorageClaim(access_mode="ReadWriteMany", storage_class="fast")),
            external_load_balancer=external,
        )
        args = workloads.MlWorkloadsArgs(
            target=target, app=APP, training=TRAINING, serving=SERVING, trainer_image=TRAINER, server_image=SERVER,
            basic_auth_username="alice", basic_auth_password=None, model_store_size="5Gi",
        )  # fmt: skip
        component = workloads.MlWorkloads("digits", replace(args, **changes))
        if built is not None:
            built.append(component)

    return harness.run(program, {})


@pytest.fixture(scope="module")
def cpu_run() -> harness.StackRun:
    return run_workloads()


@pytest.fixture(scope="module")
def gpu_run() -> harness.StackRun:
    return run_workloads(gpu=GPU)


def manifest(run: harness.StackRun, type_: str, suffix: str = "") -> dict[str, Any]:
    return harness.manifest(run.one(type_, suffix))


def pod_spec(run: harness.StackRun, type_: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifest(run, type_)["spec"]["template"]["spec"]
    return spec


def container(run: harness.StackRun, type_: str) -> dict[str, Any]:
    containers = pod_spec(run, type_)["containers"]
    assert len(containers) == 1, f"{type_}: expected one container"
    found: dict[str, Any] = containers[0]
    return found


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"


# --- wiring between objects ------------------------------------------------------


def test_service_selects_exactly_the_serving_pods(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE)
    deployment = manifest(cpu_run, DEPLOYMENT)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector == deployment["spec"]["selector"]["matchLabels"], "Service and Deployment select differently"
    assert selector.items() <= pod_labels.items(), f"Service selector {selector} does not match pods {pod_labels}"
    trainer_labels = manifest(cpu_run, JOB)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= trainer_labels.items(), "the Service would also select the training pod"


def test_service_targets_the_containers_named_port(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE)
    ports = {p["name"]: p for p in container(cpu_run, DEPLOYMENT)["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service_port["targetPort"] in ports, f"Service targets {service_port['targetPort']}, pods declare {ports}"
    assert ports[service_port["targetPort"]]["containerPort"] == workloads.APP_PORT
    assert service_port["port"] == SERVING.service_port
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_probes_hit_the_named_port_and_the_apps_endpoints(cpu_run: harness.StackRun) -> None:
    server = container(cpu_run, DEPLOYMENT)
    declared = {p["name"] for p in server["ports"]}
    expected = {
        "startupProbe": "/v2/health/ready",
        "readinessProbe": "/v2/health/ready",
        "livenessProbe": "/v2/health/live",
    }
    for probe, path in expected.items():
        http = server[probe]["httpGet"]
        assert http["port"] in declared, f"{probe} uses port {http['port']}, the container declares {declared}"
        assert http["path"] == path, f"{probe} asks {http['path']}, expected {path}"
    # A slow model load must not get the pod killed: startup allows far longer than liveness.
    startup, liveness = server["startupProbe"], server["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert liveness["periodSeconds"] * liveness["failureThreshold"] < 120


def test_env_and_secret_references_name_objects_and_keys_that_exist(cpu_run: harness.StackRun) -> None:
    objects = [m for _, m in harness.kubernetes_manifests(cpu_run)]
    configmaps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    secrets = {m["metadata"]["name"]: m for m in objects if m["kind"] == "Secret"}
    for type_ in (DEPLOYMENT, JOB):
        c = container(cpu_run, type_)
        for source in c["envFrom"]:
            assert source["configMapRef"]["name"] in configmaps, f"{type_} envFrom names a missing ConfigMap"
        for var in c.get("env", []):
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in secrets, f"{type_} {var['name']} names a missing Secret {ref['name']}"
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{type_} {var['name']}: no key {ref['key']}"
    server_env = {v["name"]: v for v in container(cpu_run, DEPLOYMENT)["env"]}
    assert server_env["MLAPP_AUTH_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    assert server_env["MLAPP_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"


def test_labels_file_is_mounted_where_the_env_points(cpu_run: harness.StackRun) -> None:
    spec = pod_spec(cpu_run, DEPLOYMENT)
    env_config = manifest(cpu_run, CONFIGMAP, "-env")
    labels_config = manifest(cpu_run, CONFIGMAP, "-labels")
    volume = next(v for v in spec["volumes"] if v["name"] == "labels")
    assert volume["configMap"]["name"] == labels_config["metadata"]["name"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "labels")
    (item,) = volume["configMap"]["items"]
    assert item["key"] in labels_config["data"]
    assert env_config["data"]["MLAPP_LABELS_FILE"] == f"{mount['mountPath']}/{item['path']}"
    assert labels_config["data"][item["key"]] == "zero\none\n"
    assert "labels.txt" not in env_config["data"], "the labels file must not become an env var"


def test_basic_auth_secret_has_the_standard_type_and_keys(cpu_run: harness.StackRun) -> None:
    secret = manifest(cpu_run, SECRET)
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["stringData"]["username"] == "alice"
    assert secret["stringData"]["password"] == harness.MOCK_GENERATED_PASSWORD


def test_config_secret_and_job_are_auto_named_so_changes_roll(cpu_run: harness.StackRun) -> None:
    for type_ in (CONFIGMAP, SECRET, JOB):
        for registration in cpu_run.of_type(type_):
            assert not registration.inputs["metadata"].get("name"), f"{registration.name} has a fixed name"


def test_deployment_waits_for_the_training_job(cpu_run: harness.StackRun) -> None:
    job = cpu_run.one(JOB)
    deployment = cpu_run.one(DEPLOYMENT)
    assert job.urn in deployment.dependencies, "the Deployment must depend on the Job (roll out only gated models)"


def test_job_and_deployment_share_the_model_store(cpu_run: harness.StackRun) -> None:
    claim = manifest(cpu_run, PVC)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    for type_, read_only in ((JOB, False), (DEPLOYMENT, True)):
        spec = pod_spec(cpu_run, type_)
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount["mountPath"] == workloads.MODEL_MOUNT
        assert bool(mount.get("readOnly")) is read_only, f"{type_} mounts the store read_only={mount.get('readOnly')}"


def test_serving_reads_the_version_the_job_trains(cpu_run: harness.StackRun) -> None:
    args = container(cpu_run, JOB)["args"]
    version = args[args.index("--version") + 1]
    server_env = {v["name"]: v.get("value") for v in container(cpu_run, DEPLOYMENT)["env"]}
    assert server_env["MLAPP_MODEL_VERSION"] == version
    assert version == workloads.model_version(TRAINER, TRAINING)
    assert args[args.index("--min-accuracy") + 1] == "0.9"
    assert args[args.index("--model-dir") + 1] == workloads.MODEL_MOUNT


def test_model_version_follows_what_produced_the_model() -> None:
    base = workloads.model_version(TRAINER, TRAINING)
    assert workloads.model_version(TRAINER, TRAINING) == base, "not deterministic"
    assert workloads.model_version("registry.example.com/ml/trainer:1.1", TRAINING) != base
    assert workloads.model_version(TRAINER, replace(TRAINING, epochs=4)) != base
    assert workloads.model_version(TRAINER, replace(TRAINING, seed=8)) != base
    assert workloads.model_version(TRAINER, replace(TRAINING, learning_rate=0.02)) != base
    # The gate decides whether a model ships, not what it is.
    assert workloads.model_version(TRAINER, replace(TRAINING, min_accuracy=0.5)) == base
    assert workloads.model_version(TRAINER, replace(TRAINING, backoff_limit=5)) == base


def test_training_job_spec(cpu_run: harness.StackRun) -> None:
    job = cpu_run.one(JOB)
    spec = harness.manifest(job)["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert job.custom_timeouts["create"] == "40m", "pulumi up must wait long enough for training"
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]}} in rules
    assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] == "DisruptionTarget" for r in rules)
    assert "ttlSecondsAfterFinished" not in spec


def test_rollout_never_drops_below_the_desired_count(cpu_run: harness.StackRun) -> None:
    deployment = cpu_run.one(DEPLOYMENT)
    strategy = harness.manifest(deployment)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert harness.manifest(deployment)["spec"]["replicas"] == SERVING.replicas
    assert "spec.replicas" in deployment.ignore_changes, "updates would fight the autoscaler"


def test_autoscaler_and_disruption_budget_cover_the_deployment(cpu_run: harness.StackRun) -> None:
    deployment = manifest(cpu_run, DEPLOYMENT)
    hpa = manifest(cpu_run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    pdb = manifest(cpu_run, "kubernetes:policy/v1:PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_server_resources_come_from_config(cpu_run: harness.StackRun) -> None:
    resources = container(cpu_run, DEPLOYMENT)["resources"]
    assert resources == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@pytest.mark.parametrize("type_", [JOB, DEPLOYMENT])
def test_pods_are_locked_down(cpu_run: harness.StackRun, type_: str) -> None:
    spec = pod_spec(cpu_run, type_)
    context = spec["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False, "the store needs no token, so the pod gets none"
    sa = manifest(cpu_run, "kubernetes:core/v1:ServiceAccount")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]


def test_every_object_carries_the_recommended_labels(cpu_run: harness.StackRun) -> None:
    for registration, obj in harness.kubernetes_manifests(cpu_run):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "digits", registration.name
        assert labels["app.kubernetes.io/managed-by"] == "pulumi", registration.name
        assert "app.kubernetes.io/component" in labels, registration.name
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "ml", f"{registration.name} is outside the app's namespace"


def test_every_kubernetes_object_uses_the_clusters_provider(cpu_run: harness.StackRun) -> None:
    (provider,) = cpu_run.of_type("pulumi:providers:kubernetes")
    for registration in cpu_run.kubernetes_objects():
        assert registration.provider_urn == provider.urn, f"{registration.name} uses {registration.provider}"


def test_every_child_is_parented_to_the_component(cpu_run: harness.StackRun) -> None:
    (component,) = cpu_run.of_type("mlstack:workloads:MlWorkloads")
    for registration in cpu_run.registrations.values():
        if registration.type.startswith(("kubernetes:", "random:")):
            assert registration.parent == component.urn, f"{registration.name} is parented to {registration.parent}"


# --- GPU scheduling: present exactly when the target has a GPU ------------------------


def test_gpu_target_puts_the_job_on_the_gpu_pool(gpu_run: harness.StackRun) -> None:
    spec = pod_spec(gpu_run, JOB)
    assert spec["nodeSelector"] == {"mlstack.dev/pool": "gpu"}
    tolerated = {(t["key"], t.get("value"), t["effect"]) for t in spec["tolerations"]}
    for t in GPU.tolerations:
        assert (t.key, t.value, t.effect) in tolerated, f"the Job does not tolerate {t.key}"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_cpu_target_asks_for_no_gpu(cpu_run: harness.StackRun) -> None:
    spec = pod_spec(cpu_run, JOB)
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]


def test_serving_never_lands_on_the_gpu_pool(gpu_run: harness.StackRun) -> None:
    spec = pod_spec(gpu_run, DEPLOYMENT)
    assert "tolerations" not in spec
    assert "nodeSelector" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]


def test_more_gpus_than_a_node_carries_is_refused() -> None:
    with pytest.raises(workloads.WorkloadsError, match=r"mlstack:trainerGpus = 2: .* carry 1 nvidia-tesla-t4"):
        run_workloads(gpu=GPU, training=replace(TRAINING, gpus=2))


# --- exposure ----------------------------------------------------------------------


def test_external_load_balancer_gives_its_address() -> None:
    built: list[workloads.MlWorkloads] = []
    result = run_workloads(external=True, built=built)
    service = result.one(SERVICE)
    assert "pulumi.com/skipAwait" not in (service.inputs["metadata"].get("annotations") or {})
    assert harness.resolve(built[0].url) == f"http://{harness.MOCK_LB_IP}"
    assert built[0].port_forward is None


def test_cluster_without_external_ip_does_not_wait_for_one() -> None:
    built: list[workloads.MlWorkloads] = []
    result = run_workloads(external=False, built=built, kube_context="kind-ml")
    annotations = result.one(SERVICE).inputs["metadata"]["annotations"]
    assert annotations == {"pulumi.com/skipAwait": "true"}
    assert harness.resolve(built[0].url) == "http://localhost:8080"
    assert built[0].port_forward == "kubectl --context kind-ml -n ml port-forward service/digits 8080:80"


def test_load_balancer_url_from_status() -> None:
    status = k8s.core.v1.outputs.ServiceStatus(
        load_balancer=k8s.core.v1.outputs.LoadBalancerStatus(
            ingress=[k8s.core.v1.outputs.LoadBalancerIngress(ip="198.51.100.4")]
        )
    )
    assert workloads.load_balancer_url(status, 80) == "http://198.51.100.4"
    assert workloads.load_balancer_url(status, 8443) == "http://198.51.100.4:8443"
    named = k8s.core.v1.outputs.ServiceStatus(
        load_balancer=k8s.core.v1.outputs.LoadBalancerStatus(
            ingress=[k8s.core.v1.outputs.LoadBalancerIngress(hostname="lb.example.com")]
        )
    )
    assert workloads.load_balancer_url(named, 80) == "http://lb.example.com"
    assert workloads.load_balancer_url(None, 80).startswith("pending")


# --- a CSI store (GCS FUSE) reached through workload identity --------------------------


def test_csi_store_is_mounted_inline_with_its_annotations_and_token() -> None:
    store = ModelStore(
        csi=CsiVolume(driver="gcsfuse.csi.storage.gke.io", volume_attributes={"bucketName": "models-bucket"}),
        pod_annotations={"gke-gcsfuse/volumes": "true"},
        service_account_annotations={"example.com/identity": "reader"},
        needs_service_account_token=True,
    )
    result = run_workloads(store=store)
    assert result.of_type(PVC) == [], "a CSI store needs no claim"
    sa = manifest(result, "kubernetes:core/v1:ServiceAccount")
    assert sa["metadata"]["annotations"] == {"example.com/identity": "reader"}
    for type_, read_only in ((JOB, False), (DEPLOYMENT, True)):
        obj = manifest(result, type_)
        spec = obj["spec"]["template"]["spec"]
        assert obj["spec"]["template"]["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
        assert volume["csi"]["volumeAttributes"] == {"bucketName": "models-bucket"}
        assert bool(volume["csi"].get("readOnly")) is read_only
        assert spec["automountServiceAccountToken"] is True
        assert spec["serviceAccountName"] == sa["metadata"]["name"]


def test_model_store_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModelStore()
    with pytest.raises(ValueError, match="exactly one"):
        ModelStore(claim=StorageClaim("ReadWriteOnce", None), csi=CsiVolume("x", {}))
