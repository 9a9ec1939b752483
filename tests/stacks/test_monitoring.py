"""What each shipped stack gives its cluster's own collector: the servers' and the trainer's metrics, scraped.

GKE: PodMonitoring objects for Managed Service for Prometheus, managed collection on; AKS: the
azmonitoring PodMonitors of Azure Monitor managed Prometheus, the metrics add-on on and wired to a
workspace; local: the annotations a Prometheus of the user's own discovers. Every custom object is
validated strictly against its vendored CRD in tests/stacks/test_stacks.py (tools/crds.py); here,
that it selects the pods it means on a port they declare, and what the clouds need beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from components.workloads import WorkloadsError, check, metrics_service_annotations
from mlapp import contract
from mlstack import monitoring
from tests.args import TRAINING, FakeTarget, workloads_args
from tests.netpol import Connection, Pod, Policies
from tests.support import (
    DEPLOYMENT,
    JOB,
    PUBLISH,
    SERVICE,
    STACKS,
    TRAIN,
    SharedRun,
    StackProblems,
    container,
    pod_spec,
)
from tools import crds, harness, mocks_azure

Runs = dict[str, harness.StackRun]
SCRAPE_TYPES = {
    "gke": f"kubernetes:{monitoring.GMP_API_VERSION}:{monitoring.GMP_KIND}",
    "dev": f"kubernetes:{monitoring.AZURE_API_VERSION}:{monitoring.AZURE_KIND}",
}
ENDPOINTS = {"gke": "endpoints", "dev": "podMetricsEndpoints"}


def _is_scrape_object(obj: dict[str, Any]) -> bool:
    return crds.is_custom(obj) and not str(obj["apiVersion"]).startswith("keda.sh/")


def scrape_objects(run: harness.StackRun) -> list[dict[str, Any]]:
    return [harness.manifest(r) for r in run.kubernetes_objects() if _is_scrape_object(harness.manifest(r))]


def workload(run: harness.StackRun, type_: str) -> harness.Registration:
    """The serving Deployment, or the training Job (the publish Job serves no metrics)."""
    return run.one(type_, TRAIN if type_ == JOB else "")


def template(run: harness.StackRun, type_: str) -> dict[str, Any]:
    found: dict[str, Any] = harness.manifest(workload(run, type_))["spec"]["template"]
    return found


@pytest.mark.parametrize("stack", ["gke", "dev"])
def test_the_collector_is_told_to_scrape_the_servers_and_the_trainer_on_their_metrics_port(
    shipped: Runs, stack: str
) -> None:
    run = shipped[stack]
    objects = scrape_objects(run)
    assert {r.type for r in run.kubernetes_objects() if _is_scrape_object(harness.manifest(r))} == {SCRAPE_TYPES[stack]}
    by_selector = {tuple(sorted(o["spec"]["selector"]["matchLabels"].items())): o for o in objects}
    for type_, interval in ((DEPLOYMENT, monitoring.SERVER_SCRAPE_SECONDS), (JOB, monitoring.TRAINER_SCRAPE_SECONDS)):
        pods = template(run, type_)
        namespace = harness.manifest(workload(run, type_))["metadata"]["namespace"]
        # The selector picks exactly these pods: every label it names is on them (and it names some).
        matching = [o for key, o in by_selector.items() if key and set(key) <= set(pods["metadata"]["labels"].items())]
        assert len(matching) == 1, f"{stack}: {type_} pods are selected by {len(matching)} scrape objects"
        (scrape,) = matching
        assert scrape["metadata"]["namespace"] == namespace, "a PodMonitor selects pods of its own namespace only"
        (endpoint,) = scrape["spec"][ENDPOINTS[stack]]
        ports = {p["name"]: p["containerPort"] for p in container(workload(run, type_)).get("ports", [])}
        assert ports.get(endpoint["port"]) == contract.METRICS_PORT, f"{stack} {type_}: {endpoint['port']} not declared"
        assert (endpoint["path"], endpoint["scheme"], endpoint["interval"]) == (
            contract.METRICS_PATH, "http", f"{interval}s",
        )  # fmt: skip
    publisher = harness.manifest(run.one(JOB, PUBLISH))["spec"]["template"]["metadata"]["labels"]
    assert not [key for key in by_selector if key and set(key) <= set(publisher.items())], "the publisher serves none"
    assert len(objects) == 2, stack


def test_azure_monitor_pod_monitors_carry_the_label_limits_its_pipeline_needs(shipped: Runs) -> None:
    for obj in scrape_objects(shipped["dev"]):
        assert {k: obj["spec"].get(k) for k in monitoring.AZURE_LABEL_LIMITS} == monitoring.AZURE_LABEL_LIMITS


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_serves_its_progress_on_its_metrics_port_long_enough_for_a_last_scrape(
    shipped: Runs, stack: str
) -> None:
    run = shipped[stack]
    trainer = container(run.one(JOB, TRAIN))
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    ports = {p["name"]: p["containerPort"] for p in trainer["ports"]}
    assert int(env[contract.ENV_METRICS_PORT]) == ports[contract.METRICS_PORT_NAME] == contract.METRICS_PORT
    linger = int(env[contract.ENV_METRICS_LINGER_SECONDS])
    if stack in SCRAPE_TYPES:  # two of the intervals its scrape object asks for
        (interval,) = {
            e["interval"]
            for o in scrape_objects(run)
            if o["metadata"]["name"].endswith("-trainer")
            for e in o["spec"][ENDPOINTS[stack]]
        }
        assert linger == 2 * int(interval.removesuffix("s")), stack
    else:  # two of the community chart's default global scrape interval (1m)
        assert linger == 2 * monitoring.ANNOTATION_SCRAPE_SECONDS


def test_local_prometheus_discovers_the_metrics_service_and_the_trainer_pod_by_annotation(shipped: Runs) -> None:
    run = shipped["local"]
    assert scrape_objects(run) == [], "no CRD is assumed on a local cluster"
    expected = metrics_service_annotations()
    assert template(run, JOB)["metadata"]["annotations"].items() >= expected.items()
    metrics = harness.manifest(run.one(SERVICE, "-metrics"))
    assert metrics["metadata"]["annotations"].items() >= expected.items()
    assert int(expected[monitoring.PROMETHEUS_PORT]) == metrics["spec"]["ports"][0]["port"]
    # The servers are found through the Service only: annotated pods would be scraped twice.
    assert monitoring.PROMETHEUS_SCRAPE not in (template(run, DEPLOYMENT)["metadata"].get("annotations") or {})


@pytest.mark.parametrize("stack", ["gke", "dev"])
def test_a_cloud_stack_never_annotates_pods_for_a_prometheus_it_does_not_run(shipped: Runs, stack: str) -> None:
    for type_ in (JOB, DEPLOYMENT):
        annotations = template(shipped[stack], type_)["metadata"].get("annotations") or {}
        assert monitoring.PROMETHEUS_SCRAPE not in annotations, (stack, type_)


def test_gke_turns_managed_collection_on(shipped: Runs) -> None:
    (cluster,) = shipped["gke"].of_type("gcp:container/cluster:Cluster")
    inputs = harness.plain(cluster.inputs)
    assert inputs["monitoringConfig"]["managedPrometheus"]["enabled"] is True
    # The API refuses monitoringConfig beside the legacy services (hashicorp/terraform-provider-google#12385).
    assert not {"monitoringService", "loggingService"} & inputs.keys()


def test_aks_turns_the_metrics_add_on_on_and_sends_its_stream_to_a_workspace(shipped: Runs) -> None:
    run = shipped["dev"]

    def one(type_: str) -> harness.Registration:
        (found,) = run.of_type(f"azure-native:{type_}")
        return found

    def arm_id(registration: harness.Registration, provider: str) -> str:
        """The id Azure gives it (the mocks' shape): what another resource must name to mean it."""
        group = harness.plain(registration.inputs)["resourceGroupName"]
        return mocks_azure.arm_id(group, provider, registration.outputs["name"])

    cluster = one("containerservice:ManagedCluster")
    assert harness.plain(cluster.inputs)["azureMonitorProfile"]["metrics"]["enabled"] is True
    workspace, endpoint = one("monitor:AzureMonitorWorkspace"), one("monitor:DataCollectionEndpoint")
    rule, association = one("monitor:DataCollectionRule"), one("monitor:DataCollectionRuleAssociation")
    rule_in = harness.plain(rule.inputs)
    assert rule_in["kind"] == "Linux"
    assert harness.plain(endpoint.inputs)["kind"] == "Linux"
    assert rule_in["dataCollectionEndpointId"] == arm_id(endpoint, "Microsoft.Insights/dataCollectionEndpoints")
    (source,) = rule_in["dataSources"]["prometheusForwarder"]
    (destination,) = rule_in["destinations"]["monitoringAccounts"]
    (flow,) = rule_in["dataFlows"]
    assert source["streams"] == flow["streams"] == ["Microsoft-PrometheusMetrics"]
    assert flow["destinations"] == [destination["name"]]
    workspace_id = arm_id(workspace, "Microsoft.Monitor/accounts")
    assert destination["accountResourceId"] == workspace_id
    association_in = harness.plain(association.inputs)
    assert association_in["resourceUri"] == arm_id(cluster, "Microsoft.ContainerService/managedClusters")
    assert association_in["dataCollectionRuleId"] == arm_id(rule, "Microsoft.Insights/dataCollectionRules")
    assert run.exports["metricsWorkspaceId"] == workspace_id


def test_local_metrics_namespace_names_the_only_scrapers(shared_run: SharedRun) -> None:
    run = shared_run("local", {"localMetricsNamespace": "observability"})
    policies = Policies.of(run)
    for type_ in (JOB, DEPLOYMENT):
        obj = harness.manifest(workload(run, type_))
        spec = pod_spec(workload(run, type_))
        ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c["ports"]}
        pod = Pod(obj["metadata"]["namespace"], obj["spec"]["template"]["metadata"]["labels"], ports)
        scrape = Connection(contract.METRICS_PORT, "TCP")
        assert policies.allows(Pod("observability", {"app": "prometheus"}), pod, scrape), type_
        assert not policies.allows(Pod("monitoring", {"app": "prometheus"}), pod, scrape), type_


@pytest.mark.parametrize(
    ("value", "reason"),
    [("Monitoring", "must be a DNS-1123 label"), ("mlstack", "must not be the app's own namespace")],
)
def test_a_bad_local_metrics_namespace_is_refused_naming_the_key(
    stack_problems: StackProblems, value: str, reason: str
) -> None:
    problems = stack_problems("local", localMetricsNamespace=value)
    assert any("mlstack:localMetricsNamespace" in p and reason in p for p in problems), problems


@pytest.mark.parametrize(("stack", "least"), [("local", 180), ("gke", 90), ("dev", 90)])
def test_a_deadline_that_would_end_the_job_in_its_linger_is_refused(
    stack_problems: StackProblems, stack: str, least: int
) -> None:
    """60 s to train plus the linger (two of the collector's intervals): a Job killed while it lingers
    would fail after publishing its model."""
    # A GPU node kept up: the wait for one from zero would raise the floor (tests/stacks/test_config_mistakes.py).
    warm = {"gpuMinNodes": 1} if stack != "local" else {}
    problems = stack_problems(stack, trainDeadlineSeconds=least - 1, trainTimeout="75m", **warm)
    assert any("mlstack:trainDeadlineSeconds" in p and f"must be at least {least}" in p for p in problems), problems


def test_the_workloads_refuse_such_a_deadline_themselves() -> None:
    short = dataclasses.replace(TRAINING, deadline_seconds=89)
    with pytest.raises(WorkloadsError, match="trainDeadlineSeconds"):
        check(workloads_args(FakeTarget(scrape_by="gmp"), training=short))
    check(workloads_args(FakeTarget(scrape_by="gmp"), training=dataclasses.replace(TRAINING, deadline_seconds=90)))


def test_a_local_prometheus_operator_gets_a_service_monitor_and_a_pod_monitor(shared_run: SharedRun) -> None:
    """With mlstack:localMetricsDiscovery prometheus-operator: the servers through their metrics Service
    (the port by its Service name), the trainer by its pods; every object valid against its CRD."""
    run = shared_run("local", {"localMetricsDiscovery": "prometheus-operator"})
    objects = {o["kind"]: o for o in scrape_objects(run)}
    assert set(objects) == {"ServiceMonitor", "PodMonitor"}
    for obj in objects.values():
        assert obj["apiVersion"] == monitoring.OPERATOR_API_VERSION
        assert crds.validate(obj) == [], obj
    metrics = harness.manifest(run.one(SERVICE, "-metrics"))
    service_monitor = objects["ServiceMonitor"]["spec"]
    assert service_monitor["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    # It selects that Service alone among the stack's Services.
    selected = [
        s for s in run.of_type(SERVICE)
        if service_monitor["selector"]["matchLabels"].items() <= harness.manifest(s)["metadata"]["labels"].items()
    ]  # fmt: skip
    assert [harness.manifest(s)["metadata"]["name"] for s in selected] == [metrics["metadata"]["name"]]
    (endpoint,) = service_monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in metrics["spec"]["ports"]}
    pod_monitor = objects["PodMonitor"]["spec"]
    assert pod_monitor["selector"]["matchLabels"].items() <= template(run, JOB)["metadata"]["labels"].items()
    # No annotations for a Prometheus that does not read them, and a linger of two of our own intervals.
    assert monitoring.PROMETHEUS_SCRAPE not in (template(run, JOB)["metadata"].get("annotations") or {})
    env = {e["name"]: e.get("value") for e in container(run.one(JOB, TRAIN))["env"]}
    assert int(env[contract.ENV_METRICS_LINGER_SECONDS]) == 2 * monitoring.TRAINER_SCRAPE_SECONDS


def test_a_local_metrics_discovery_outside_the_choices_is_refused(stack_problems: StackProblems) -> None:
    problems = stack_problems("local", localMetricsDiscovery="gmp")
    assert any("mlstack:localMetricsDiscovery" in p and "prometheus-operator" in p for p in problems), problems
