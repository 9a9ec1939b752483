"""MlWorkloads under mocks: the relationships between the objects it creates, not just that they exist.

What each spec says is checked on the pure builders (tests/pure/test_workloads.py);
here, that the objects refer to each other by the names they got, in the right order.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import workloads
from components.target import GPU_RESOURCE, CsiVolume, GpuScheduling, ModelStore, PrometheusSource
from mlapp import contract
from mlstack import autoscaling
from tests.args import (
    APP,
    FAKE_AUTOSCALER,
    GPU,
    SERVER_IMAGE,
    SERVING,
    TRAINER_IMAGE,
    TRAINING,
    FakeTarget,
    workloads_args,
)
from tests.support import (
    CONFIGMAP,
    DEPLOYMENT,
    JOB,
    NETWORK_POLICY,
    PUBLISH,
    PVC,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    TRAIN,
    CountingMocks,
    container,
    plain_strings,
    pod_spec,
    tolerates_gpu_taint,
)
from tools import crds, harness, mocks_tls

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
SERVER_CERTIFICATE = "tls:index/locallySignedCert:LocallySignedCert"
CA_CERTIFICATE = "tls:index/selfSignedCert:SelfSignedCert"
OWN_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nb3duIGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n"
OWN_KEY = "-----BEGIN PRIVATE KEY-----\nb3duIGtleQ==\n-----END PRIVATE KEY-----\n"


def run_workloads(
    gpu: GpuScheduling | None = None,
    store: ModelStore | None = None,
    external: bool = True,
    built: list[workloads.MlWorkloads] | None = None,
    mocks: harness.StackMocks | None = None,
    **changes: Any,
) -> harness.StackRun:
    def program() -> None:
        target = FakeTarget(
            provider=k8s.Provider("cluster", kubeconfig="{}"),
            kubeconfig=pulumi.Output.secret("{}"),
            gpu=gpu,
            external_load_balancer=external,
        )
        if store is not None:
            target = replace(target, model_store=store)
        component = workloads.MlWorkloads("digits", workloads_args(target, **changes))
        if built is not None:
            built.append(component)

    return harness.run(program, {}, mocks=mocks)


@pytest.fixture(scope="module")
def cpu_run() -> harness.StackRun:
    return run_workloads()


@pytest.fixture(scope="module")
def gpu_run() -> harness.StackRun:
    return run_workloads(gpu=GPU)


def manifest(run: harness.StackRun, type_: str, suffix: str = "") -> dict[str, Any]:
    return harness.manifest(run.one(type_, suffix))


# --- wiring between objects ------------------------------------------------------


def test_service_selects_exactly_the_serving_pods(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE, "-service")
    deployment = manifest(cpu_run, DEPLOYMENT)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector == deployment["spec"]["selector"]["matchLabels"], "Service and Deployment select differently"
    assert selector.items() <= pod_labels.items(), f"Service selector {selector} does not match pods {pod_labels}"
    trainer_labels = manifest(cpu_run, JOB, TRAIN)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= trainer_labels.items(), "the Service would also select the training pod"


def test_service_targets_the_containers_named_port(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE, "-service")
    ports = {p["name"]: p for p in container(cpu_run.one(DEPLOYMENT))["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports, f"Service targets {service_port['targetPort']}, pods declare {ports}"
    assert ports[service_port["targetPort"]]["containerPort"] == contract.PORT
    assert service_port["port"] == SERVING.service_port


def test_the_load_balancer_exposes_no_metrics_port(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE, "-service")
    assert service["spec"]["type"] == "LoadBalancer"
    exposed = {(p["name"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert exposed == {(contract.PORT_NAME, contract.PORT_NAME)}, f"the public Service exposes {exposed}"
    assert contract.METRICS_PORT not in {p["port"] for p in service["spec"]["ports"]}


def test_the_metrics_service_is_in_cluster_and_targets_the_containers_metrics_port(cpu_run: harness.StackRun) -> None:
    service = manifest(cpu_run, SERVICE, "-metrics")
    deployment = manifest(cpu_run, DEPLOYMENT)
    assert service["spec"]["type"] == "ClusterIP", "metrics must not leave the cluster"
    assert service["metadata"]["name"] == "digits-metrics"
    ports = {p["name"]: p for p in container(cpu_run.one(DEPLOYMENT))["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]]["containerPort"] == contract.METRICS_PORT
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["port"])
    assert annotations["prometheus.io/path"] == contract.METRICS_PATH


def test_env_and_secret_references_name_objects_and_keys_that_exist(cpu_run: harness.StackRun) -> None:
    objects = [m for _, m in harness.kubernetes_manifests(cpu_run)]
    configmaps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    secrets = {m["metadata"]["name"]: m for m in objects if m["kind"] == "Secret"}
    for registration in (cpu_run.one(DEPLOYMENT), cpu_run.one(JOB, TRAIN), cpu_run.one(JOB, PUBLISH)):
        c = container(registration)
        for source in c.get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps, (
                f"{registration.name} envFrom names a missing ConfigMap"
            )
        for var in c.get("env", []):
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                where = f"{registration.name} {var['name']}"
                assert ref["name"] in secrets, f"{where} names a missing Secret {ref['name']}"
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{where}: no key {ref['key']}"
    # The trainer's environment is the contract's alone: none of the server's ConfigMap, no Secret.
    trainer = container(cpu_run.one(JOB, TRAIN))
    assert "envFrom" not in trainer
    assert all("value" in var or "fieldRef" in var.get("valueFrom", {}) for var in trainer["env"])


def test_the_password_reaches_the_server_as_a_file_from_the_basic_auth_secret_never_a_variable(
    cpu_run: harness.StackRun,
) -> None:
    secret = manifest(cpu_run, SECRET, "-basic-auth")
    spec = pod_spec(cpu_run.one(DEPLOYMENT))
    (server,) = spec["containers"]
    volume = next(v for v in spec["volumes"] if v["name"] == workloads.AUTH_VOLUME)
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (item,) = volume["secret"]["items"]
    assert (item["key"], item["path"]) == ("password", contract.AUTH_PASSWORD_FILE_NAME)
    assert item["key"] in secret["stringData"]
    assert volume["secret"]["defaultMode"] & 0o077 == 0o040, "owner and the app's group (fsGroup) only"
    mount = next(m for m in server["volumeMounts"] if m["name"] == workloads.AUTH_VOLUME)
    assert (mount["mountPath"], mount["readOnly"]) == (contract.AUTH_DIR, True)
    env = {v["name"]: v for v in server["env"]}
    assert env[contract.ENV_AUTH_PASSWORD_FILE]["value"] == f"{mount['mountPath']}/{item['path']}"
    assert contract.ENV_AUTH_PASSWORD not in env, "the password as a variable"
    assert env[contract.ENV_AUTH_USERNAME]["value"] == secret["stringData"]["username"] == "alice"
    password = secret["stringData"]["password"]
    for registration in (cpu_run.one(DEPLOYMENT), cpu_run.one(JOB, TRAIN), cpu_run.one(JOB, PUBLISH)):
        for var in container(registration).get("env", []):
            assert "secretKeyRef" not in var.get("valueFrom", {}), f"{registration.name} {var['name']} from a Secret"
            assert password not in str(var.get("value", "")), f"{registration.name} {var['name']} holds the password"


def test_labels_file_is_mounted_from_the_labels_config_map(cpu_run: harness.StackRun) -> None:
    spec = pod_spec(cpu_run.one(DEPLOYMENT))
    env_config = manifest(cpu_run, CONFIGMAP, "-env")
    labels_config = manifest(cpu_run, CONFIGMAP, "-labels")
    volume = next(v for v in spec["volumes"] if v["name"] == "labels")
    assert volume["configMap"]["name"] == labels_config["metadata"]["name"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "labels")
    (item,) = volume["configMap"]["items"]
    assert item["key"] in labels_config["data"]
    assert env_config["data"][contract.ENV_LABELS_FILE] == f"{mount['mountPath']}/{item['path']}"
    assert labels_config["data"][item["key"]] == "zero\none\n"
    assert contract.LABELS_FILE_NAME not in env_config["data"], "the labels file must not become an env var"


def test_without_the_stacks_labels_the_model_s_own_are_served() -> None:
    result = run_workloads(app=replace(APP, model_labels=()))
    assert [r.name for r in result.of_type(CONFIGMAP)] == ["digits-env"], "no labels ConfigMap"
    assert contract.ENV_LABELS_FILE not in manifest(result, CONFIGMAP, "-env")["data"]
    spec = pod_spec(result.one(DEPLOYMENT))
    assert "labels" not in {v["name"] for v in spec["volumes"]}
    assert contract.LABELS_DIR not in {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}


def test_basic_auth_secret_has_the_standard_type_and_keys(cpu_run: harness.StackRun) -> None:
    secret = manifest(cpu_run, SECRET, "-basic-auth")
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["stringData"]["username"] == "alice"
    assert secret["stringData"]["password"] == harness.MOCK_GENERATED_PASSWORD


def test_config_secret_and_jobs_are_auto_named_so_changes_roll(cpu_run: harness.StackRun) -> None:
    assert {r.name for r in cpu_run.of_type(JOB)} == {"digits-train", "digits-publish"}
    for type_ in (CONFIGMAP, SECRET, JOB):
        for registration in cpu_run.of_type(type_):
            assert not registration.inputs["metadata"].get("name"), f"{registration.name} has a fixed name"


def test_training_then_publishing_then_serving(cpu_run: harness.StackRun) -> None:
    train, publish, deployment = cpu_run.one(JOB, TRAIN), cpu_run.one(JOB, PUBLISH), cpu_run.one(DEPLOYMENT)
    assert train.urn in publish.dependencies, "the publish step must wait for the training Job to succeed"
    assert publish.urn in deployment.dependencies, "the Deployment must wait for a published model"
    policies = {r.urn for r in cpu_run.of_type(NETWORK_POLICY)}
    assert len(policies) == 4, "default-deny, server, trainer, publisher"
    for job in (train, publish):
        assert policies <= set(job.dependencies), f"{job.name}'s pods must start fenced in"


def test_the_publisher_reads_the_trainers_outputs_and_publishes_the_version_served(cpu_run: harness.StackRun) -> None:
    publisher = container(cpu_run.one(JOB, PUBLISH))
    env = {v["name"]: v["value"] for v in container(cpu_run.one(JOB, TRAIN))["env"]}
    command = publisher["command"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--run"] == env[contract.ENV_OUTPUT_DIR], "the publisher reads where the trainer wrote"
    assert options["--version"] == env[contract.ENV_MODEL_VERSION]
    assert options["--model-name"] == env[contract.ENV_MODEL_NAME]
    server_env = {v["name"]: v.get("value") for v in container(cpu_run.one(DEPLOYMENT))["env"]}
    assert server_env[contract.ENV_MODEL_VERSION] == options["--version"], "the server loads what was published"
    assert publisher["image"] == SERVER_IMAGE
    assert {v["name"]: v["value"] for v in publisher["env"]}[contract.ENV_TRAINER_IMAGE] == TRAINER_IMAGE


def test_the_publish_job_runs_on_the_system_pool_as_the_trainers_account(gpu_run: harness.StackRun) -> None:
    spec = pod_spec(gpu_run.one(JOB, PUBLISH))
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec, "it would land on, and hold, a GPU node"
    assert GPU_RESOURCE not in spec["containers"][0]["resources"]["limits"]
    assert spec["serviceAccountName"] == pod_spec(gpu_run.one(JOB, TRAIN))["serviceAccountName"]
    timeout = workloads.PUBLISH_TIMEOUT
    assert gpu_run.one(JOB, PUBLISH).custom_timeouts == {"create": timeout, "update": timeout}


def test_jobs_and_deployment_share_the_model_store(cpu_run: harness.StackRun) -> None:
    claim = manifest(cpu_run, PVC)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    for (type_, suffix), read_only in (((JOB, TRAIN), False), ((JOB, PUBLISH), False), ((DEPLOYMENT, ""), True)):
        spec = pod_spec(cpu_run.one(type_, suffix))
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount["mountPath"] == contract.MODEL_MOUNT
        assert bool(mount.get("readOnly")) is read_only, f"{type_}{suffix} mounts the store {mount.get('readOnly')=}"


def test_serving_reads_the_version_the_job_trains(cpu_run: harness.StackRun) -> None:
    version = {v["name"]: v["value"] for v in container(cpu_run.one(JOB, TRAIN))["env"]}[contract.ENV_MODEL_VERSION]
    server_env = {v["name"]: v.get("value") for v in container(cpu_run.one(DEPLOYMENT))["env"]}
    assert server_env[contract.ENV_MODEL_VERSION] == version
    assert version == workloads.model_version(TRAINER_IMAGE, TRAINING)


def test_pulumi_up_waits_long_enough_for_training(cpu_run: harness.StackRun) -> None:
    job = cpu_run.one(JOB, TRAIN)
    assert job.custom_timeouts == {"create": "40m", "update": "40m"}, "pulumi up must wait for the whole training"


def test_updates_leave_the_replica_count_to_the_autoscaler(cpu_run: harness.StackRun) -> None:
    deployment = cpu_run.one(DEPLOYMENT)
    assert harness.manifest(deployment)["spec"]["replicas"] == SERVING.replicas
    assert "spec.replicas" in deployment.ignore_changes, "updates would fight the autoscaler"


SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
TRIGGER_AUTHENTICATION = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"


def test_keda_scales_the_deployment_on_in_flight_requests_and_the_budget_covers_it(cpu_run: harness.StackRun) -> None:
    deployment = manifest(cpu_run, DEPLOYMENT)
    assert not cpu_run.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"), "KEDA makes the HPA"
    scaled = manifest(cpu_run, SCALED_OBJECT)
    spec = scaled["spec"]
    ref = spec["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    # The HPA the stack's CPU autoscaler had, adopted rather than refused by KEDA's webhook.
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "digits-server"
    assert scaled["metadata"]["annotations"][autoscaling.TRANSFER_HPA_OWNERSHIP] == "true"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "https://prometheus.example.com"
    assert trigger["metadata"]["threshold"] == "4"
    assert trigger["metadata"]["query"] == (
        'sum(rate(mlapp_requests_in_flight_seconds_total{cluster="fake",namespace="ml"}[120s]))'
    )
    # The operator proves who it is with the identity the target names, from the app's namespace.
    auth = manifest(cpu_run, TRIGGER_AUTHENTICATION)
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert auth["metadata"]["namespace"] == scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert auth["spec"] == {
        "podIdentity": {"provider": "azure-workload", "identityId": "00000000-0000-0000-0000-00000000cafe"}
    }
    for obj in (scaled, auth):
        assert crds.validate(obj) == [], obj
    pdb = manifest(cpu_run, "kubernetes:policy/v1:PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_scaler_waits_for_keda_and_its_grants() -> None:
    def program() -> None:
        keda = k8s.core.v1.Namespace("keda-stand-in")  # KEDA's release, say: what must exist first
        target = FakeTarget(
            provider=k8s.Provider("cluster", kubeconfig="{}"),
            autoscaler=replace(FAKE_AUTOSCALER, ready=(keda,)),
        )
        workloads.MlWorkloads("digits", workloads_args(target))

    run = harness.run(program, {})
    keda = run.one("kubernetes:core/v1:Namespace", "keda-stand-in").urn
    for type_ in (SCALED_OBJECT, TRIGGER_AUTHENTICATION):
        assert keda in run.one(type_).dependencies, type_


def test_cpu_scaling_is_keda_s_cpu_trigger_on_the_server_container() -> None:
    run = run_workloads(serving=replace(SERVING, scale_on="cpu"))
    scaled = manifest(run, SCALED_OBJECT)
    assert scaled["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60", "containerName": "server"}}
    ]
    assert not run.of_type(TRIGGER_AUTHENTICATION), "no query, no identity"
    assert crds.validate(scaled) == []


def test_a_prometheus_inside_the_cluster_is_queried_without_authentication() -> None:
    def program() -> None:
        source = PrometheusSource(server_address="http://prometheus-server.monitoring.svc:80", pod_identity=None)
        target = FakeTarget(
            provider=k8s.Provider("cluster", kubeconfig="{}"),
            scrape_by="prometheus-annotations",
            autoscaler=replace(FAKE_AUTOSCALER, source=source),
        )
        workloads.MlWorkloads("digits", workloads_args(target))

    run = harness.run(program, {})
    (trigger,) = manifest(run, SCALED_OBJECT)["spec"]["triggers"]
    assert "authenticationRef" not in trigger
    assert not run.of_type(TRIGGER_AUTHENTICATION)
    # Scraped once a minute by annotation: the rate spans four scrapes.
    assert trigger["metadata"]["query"].endswith('{namespace="ml"}[240s]))'), trigger


@pytest.mark.parametrize(
    ("type_", "suffix", "account"),
    [(JOB, TRAIN, "digits-trainer"), (JOB, PUBLISH, "digits-trainer"), (DEPLOYMENT, "", "digits-server")],
)
def test_pods_are_locked_down_and_run_as_their_role_s_service_account(
    cpu_run: harness.StackRun, type_: str, suffix: str, account: str
) -> None:
    spec = pod_spec(cpu_run.one(type_, suffix))
    context = spec["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == contract.APP_UID
    assert contract.APP_UID > 0, "root"
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False, "the store needs no token, so the pod gets none"
    accounts = {harness.manifest(r)["metadata"]["name"]: r for r in cpu_run.of_type(SERVICE_ACCOUNT)}
    assert set(accounts) == {"digits-trainer", "digits-server"}
    assert spec["serviceAccountName"] == account
    assert harness.manifest(accounts[account])["automountServiceAccountToken"] is False


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
        if registration.type.startswith(("kubernetes:", "random:", "tls:")):
            assert registration.parent == component.urn, f"{registration.name} is parented to {registration.parent}"


# --- GPU scheduling: present exactly when the target has a GPU ------------------------


def test_on_a_gpu_target_only_the_job_asks_for_the_gpu_pool(gpu_run: harness.StackRun) -> None:
    job = pod_spec(gpu_run.one(JOB, TRAIN))
    assert job["nodeSelector"] == dict(GPU.node_selector)
    assert tolerates_gpu_taint(job["tolerations"]), job["tolerations"]
    assert job["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "1"
    server = pod_spec(gpu_run.one(DEPLOYMENT))
    assert "tolerations" not in server
    assert "nodeSelector" not in server
    assert GPU_RESOURCE not in server["containers"][0]["resources"]["limits"]


def test_a_gpu_server_runs_on_the_gpu_pool_with_one_gpu_and_cuda_asked() -> None:
    run = run_workloads(gpu=replace(GPU, max_nodes=8), serving=replace(SERVING, gpu=True))
    deployment = run.one(DEPLOYMENT)
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == dict(GPU.node_selector)
    assert tolerates_gpu_taint(spec["tolerations"]), spec["tolerations"]
    server = spec["containers"][0]
    assert server["resources"]["limits"][GPU_RESOURCE] == "1"
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[contract.ENV_EXECUTION_PROVIDER] == "cuda"
    for key, value in GPU.container_env.items():
        assert env[key] == value, key
    # A pool from zero, a driver, an image of CUDA wheels: the rollout has half an hour, pulumi up a little more.
    manifest_ = harness.manifest(deployment)
    assert manifest_["spec"]["progressDeadlineSeconds"] == workloads.GPU_SERVER_PROGRESS_SECONDS
    assert deployment.custom_timeouts == {"create": "35m", "update": "35m"}
    # Rolling without losing capacity: one surge pod, which the pool must have room for (rules.server_gpu_pool).
    rolling = manifest_["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == (0, 1)
    assert harness.validate_manifest(manifest_, "1.35") == []


def test_a_cpu_server_asks_for_no_execution_provider(gpu_run: harness.StackRun) -> None:
    env = {e["name"] for e in container(gpu_run.one(DEPLOYMENT))["env"]}
    assert contract.ENV_EXECUTION_PROVIDER not in env
    assert gpu_run.one(DEPLOYMENT).custom_timeouts in ({}, None)


def test_gpu_serving_without_a_gpu_pool_is_refused_before_any_resource() -> None:
    mocks = CountingMocks()
    with pytest.raises(workloads.WorkloadsError, match=r"mlstack:serverGpu = True: this target has no GPU pool"):
        run_workloads(serving=replace(SERVING, gpu=True), mocks=mocks)
    assert mocks.created == ["pulumi:providers:kubernetes::cluster"], "only the fake target's provider"


def test_gpu_serving_on_a_pool_too_small_for_the_ceiling_and_a_surge_is_refused() -> None:
    # GPU: one T4 per node, two nodes at most; six replicas and a surge cannot fit.
    with pytest.raises(workloads.WorkloadsError, match=r"mlstack:gpuMaxNodes = 2: too few GPU nodes for serverGpu"):
        run_workloads(gpu=GPU, serving=replace(SERVING, gpu=True), mocks=CountingMocks())


def test_cpu_target_asks_for_no_gpu(cpu_run: harness.StackRun) -> None:
    spec = pod_spec(cpu_run.one(JOB, TRAIN))
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert GPU_RESOURCE not in spec["containers"][0]["resources"]["limits"]


def test_more_gpus_than_a_node_carries_is_refused_before_any_resource() -> None:
    mocks = CountingMocks()
    with pytest.raises(workloads.WorkloadsError, match=r"mlstack:trainerGpus = 2: .* carries 1 nvidia-tesla-t4"):
        run_workloads(gpu=GPU, training=replace(TRAINING, gpus=2), mocks=mocks)
    assert mocks.created == ["pulumi:providers:kubernetes::cluster"], "only the fake target's provider"


# --- exposure ----------------------------------------------------------------------


def test_external_load_balancer_gives_its_address() -> None:
    built: list[workloads.MlWorkloads] = []
    result = run_workloads(external=True, built=built)
    service = result.one(SERVICE, "-service")
    assert "pulumi.com/skipAwait" not in (service.inputs["metadata"].get("annotations") or {})
    assert harness.resolve(built[0].url) == f"https://{harness.MOCK_LB_IP}", "a URL on 443 needs no port"
    assert built[0].port_forward is None
    curl = harness.resolve(built[0].curl)
    assert curl.endswith(f"https://{harness.MOCK_LB_IP}/v2/models/digits")
    assert "pulumi stack output caCertificate > digits-ca.pem && curl --cacert digits-ca.pem " in curl


def test_cluster_without_external_ip_does_not_wait_for_one() -> None:
    built: list[workloads.MlWorkloads] = []
    result = run_workloads(external=False, built=built, kube_context="kind-ml")
    annotations = result.one(SERVICE, "-service").inputs["metadata"]["annotations"]
    assert annotations == {"pulumi.com/skipAwait": "true"}
    assert harness.resolve(built[0].url) == "https://localhost:8443"
    assert built[0].port_forward == "kubectl --context kind-ml -n ml port-forward service/digits 8443:443"
    curl = harness.resolve(built[0].curl)
    assert curl.startswith(f"({built[0].port_forward} &)")
    assert "--cacert digits-ca.pem" in curl
    assert curl.endswith("https://localhost:8443/v2/models/digits")


# --- TLS: the stack's own CA and certificate, in a kubernetes.io/tls Secret ----------------


def test_the_tls_secret_is_a_kubernetes_tls_secret_with_the_signed_certificate(cpu_run: harness.StackRun) -> None:
    secret = manifest(cpu_run, SECRET, "-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["stringData"]) == {"tls.crt", "tls.key"}, "the keys a kubernetes.io/tls Secret must hold"
    assert secret["immutable"] is True, "a new certificate must make a new Secret"
    certificate = cpu_run.one(SERVER_CERTIFICATE)
    key = cpu_run.one(PRIVATE_KEY, "-server-key")
    assert secret["stringData"]["tls.crt"] == certificate.outputs["certPem"]
    assert secret["stringData"]["tls.key"] == harness.plain(key.outputs["privateKeyPem"])
    assert not secret["metadata"].get("name", "").endswith("-tls"), "auto-named: a new certificate rolls"


def test_the_serving_pods_mount_the_tls_secret_and_carry_its_certificates_digest(cpu_run: harness.StackRun) -> None:
    secret = manifest(cpu_run, SECRET, "-tls")
    spec = pod_spec(cpu_run.one(DEPLOYMENT))
    volume = next(v for v in spec["volumes"] if v["name"] == workloads.TLS_VOLUME)
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert {item["key"] for item in volume["secret"]["items"]} <= set(secret["stringData"])
    digest = hashlib.sha256(secret["stringData"]["tls.crt"].encode()).hexdigest()
    annotations = manifest(cpu_run, DEPLOYMENT)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[workloads.CERTIFICATE_DIGEST_ANNOTATION] == digest
    key_digest = hashlib.sha256(secret["stringData"]["tls.key"].encode()).hexdigest()
    assert key_digest not in annotations.values(), "nothing of the key is annotated"


def test_the_certificate_is_signed_by_the_exported_ca_for_a_server() -> None:
    built: list[workloads.MlWorkloads] = []
    result = run_workloads(built=built)
    ca = result.one(CA_CERTIFICATE)
    assert ca.inputs["isCaCertificate"] is True
    assert {"cert_signing"} <= set(ca.inputs["allowedUses"])
    certificate = result.one(SERVER_CERTIFICATE)
    assert "server_auth" in certificate.inputs["allowedUses"]
    assert certificate.inputs["caCertPem"] == ca.outputs["certPem"]
    exported = built[0].ca_certificate
    assert exported is not None, "the stack's own CA is exported"
    assert harness.resolve(exported) == ca.outputs["certPem"]
    assert not harness.is_secret(exported), "the CA certificate is public"
    for registration, early, validity in (
        (certificate, 720, 8760),
        (ca, 8760, 87600),
    ):
        assert (registration.inputs["earlyRenewalHours"], registration.inputs["validityPeriodHours"]) == (
            early, validity,
        ), f"{registration.name} renews on `pulumi up` inside its last {early} hours"  # fmt: skip


def test_the_certificate_names_the_load_balancers_address_localhost_and_the_service(cpu_run: harness.StackRun) -> None:
    request = cpu_run.one(CERT_REQUEST)
    assert harness.MOCK_LB_IP in request.inputs["ipAddresses"], "the address clients reach the Service at"
    assert "127.0.0.1" in request.inputs["ipAddresses"]
    assert {"localhost", "digits", "digits.ml", "digits.ml.svc", "digits.ml.svc.cluster.local"} <= set(
        request.inputs["dnsNames"]
    )
    # What the Secret serves is what was requested (the mocks sign what they are asked to).
    served = mocks_tls.decode(manifest(cpu_run, SECRET, "-tls")["stringData"]["tls.crt"])
    assert served["ipAddresses"] == request.inputs["ipAddresses"]


def test_a_load_balancer_host_name_is_a_dns_name_on_the_certificate() -> None:
    class HostnameMocks(harness.StackMocks):
        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            id_, state = super().new_resource(args)
            if "status" in state:
                state["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb-1.elb.example.com"}]}}
            return id_, state

    default = harness.default_mocks()
    result = run_workloads(mocks=HostnameMocks(outputs=default.outputs, calls=default.calls))
    request = result.one(CERT_REQUEST)
    assert request.inputs["dnsNames"][0] == "lb-1.elb.example.com"
    assert request.inputs["ipAddresses"] == ["127.0.0.1"]


def test_without_an_external_address_the_certificate_names_localhost_and_the_service() -> None:
    result = run_workloads(external=False)
    request = result.one(CERT_REQUEST)
    assert request.inputs["ipAddresses"] == ["127.0.0.1"]
    assert request.inputs["dnsNames"][0] == "localhost"


def test_order_is_service_then_certificate_then_secret_then_deployment(cpu_run: harness.StackRun) -> None:
    service = cpu_run.one(SERVICE, "-service")
    request = cpu_run.one(CERT_REQUEST)
    certificate = cpu_run.one(SERVER_CERTIFICATE)
    secret = cpu_run.one(SECRET, "-tls")
    deployment = cpu_run.one(DEPLOYMENT)
    assert service.urn in request.dependencies, "the certificate must wait for the Service's address"
    assert request.urn in certificate.dependencies
    assert certificate.urn in secret.dependencies
    assert secret.urn in deployment.dependencies
    assert deployment.urn not in service.dependencies, "the Service would wait for the Deployment: a cycle"


def test_a_new_certificate_changes_the_pods_annotation() -> None:
    def digest(load_balancer_ip: str) -> str:
        mocks = harness.default_mocks()
        mocks.load_balancer_ip = load_balancer_ip
        result = run_workloads(mocks=mocks)
        template = manifest(result, DEPLOYMENT)["spec"]["template"]
        return str(template["metadata"]["annotations"][workloads.CERTIFICATE_DIGEST_ANNOTATION])

    first = digest("203.0.113.10")
    assert digest("203.0.113.10") == first, "the same certificate must not roll the pods"
    assert digest("203.0.113.99") != first, "a certificate for a new address must roll the pods"


def test_the_private_keys_are_never_in_plain_text_in_any_input(cpu_run: harness.StackRun) -> None:
    keys = [harness.plain(r.outputs["privateKeyPem"]) for r in cpu_run.of_type(PRIVATE_KEY)]
    assert len(keys) == 2, "the CA's key and the server's"
    for registration in cpu_run.of_type(PRIVATE_KEY):
        assert harness.is_secret_value(registration.outputs["privateKeyPem"]), f"{registration.name}'s key"
    for registration in cpu_run.registrations.values():
        for text in plain_strings(registration.inputs):
            assert "PRIVATE KEY" not in text, f"{registration.name} has a private key outside a secret"
            assert not any(key in text for key in keys), f"{registration.name} carries a key in plain text"


# --- TLS: a certificate the user brings -------------------------------------------------------


def test_a_certificate_the_user_brings_is_served_and_no_ca_is_made() -> None:
    built: list[workloads.MlWorkloads] = []
    own = workloads.ServerCertificate(
        certificate=pulumi.Output.secret(OWN_CERTIFICATE), private_key=pulumi.Output.secret(OWN_KEY)
    )
    result = run_workloads(built=built, server_certificate=own)
    assert [r.type for r in result.registrations.values() if r.type.startswith("tls:")] == []
    assert built[0].ca_certificate is None
    secret = manifest(result, SECRET, "-tls")
    assert secret["stringData"] == {"tls.crt": OWN_CERTIFICATE, "tls.key": OWN_KEY}
    assert harness.is_secret_value(result.one(SECRET, "-tls").inputs["stringData"])
    curl = harness.resolve(built[0].curl)
    assert "--cacert" not in curl, "the user's certificate is trusted as the system trusts it"
    annotations = manifest(result, DEPLOYMENT)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[workloads.CERTIFICATE_DIGEST_ANNOTATION] == hashlib.sha256(OWN_CERTIFICATE.encode()).hexdigest()
    template = result.one(DEPLOYMENT).inputs["spec"]["template"]
    assert not harness.is_secret_value(template), "the certificate's digest is no secret: keep the template readable"


# --- a CSI store (GCS FUSE) reached through workload identity --------------------------


def test_csi_store_creates_no_claim_and_annotates_each_role_s_service_account() -> None:
    store = ModelStore(
        csi=CsiVolume(driver="gcsfuse.csi.storage.gke.io", volume_attributes={"bucketName": "models-bucket"}),
        pod_annotations={"gke-gcsfuse/volumes": "true"},
        trainer_account_annotations={"example.com/identity": "writer"},
        server_account_annotations={"example.com/identity": "reader"},
        needs_service_account_token=True,
    )
    result = run_workloads(store=store)
    assert result.of_type(PVC) == [], "a CSI store needs no claim"
    accounts = {harness.manifest(r)["metadata"]["name"]: harness.manifest(r) for r in result.of_type(SERVICE_ACCOUNT)}
    for (type_, suffix), identity in (
        ((JOB, TRAIN), "writer"),
        ((JOB, PUBLISH), "writer"),
        ((DEPLOYMENT, ""), "reader"),
    ):
        spec = pod_spec(result.one(type_, suffix))
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["csi"]["volumeAttributes"] == {"bucketName": "models-bucket"}
        assert spec["automountServiceAccountToken"] is True
        account = accounts[spec["serviceAccountName"]]
        assert account["metadata"]["annotations"] == {"example.com/identity": identity}, type_
