"""Who reaches the workloads and whom they reach, on every shipped stack, by the NetworkPolicies it applies.

Finding (security review): no NetworkPolicy, so any pod reached the server around
``loadBalancerSourceRanges``, and the trainer had open egress. Each test asks the policies
(tests/netpol.py, Kubernetes' rules) about every connection between a set of peers and ports, and
compares what is allowed with what each pod needs, with nothing more. That the clusters enforce
the policies at all: tests/stacks/test_aks.py, tests/stacks/test_gke.py, and docs/ for kind.
"""

from __future__ import annotations

import itertools
from typing import Final

import pytest

from components import aks
from mlapp import contract
from tests.netpol import Address, Connection, Peer, Pod, Policies
from tests.support import DAEMONSET, DEPLOYMENT, JOB, PUBLISH, STACKS, TRAIN, SharedRun, pod_spec
from tools import harness

Runs = dict[str, harness.StackRun]

# Peers a pod may meet. The addresses: a caller inside the stacks' allowedSourceRanges
# (203.0.113.0/24), one outside it, a Google API address (storage.googleapis.com), an address
# in the cluster's private range, and the link-local services of a GKE node. The pods: the
# cluster's DNS (kube-dns, and NodeLocal DNSCache's node-local-dns, sources in
# components/network.py), another kube-system pod, one in another namespace, and the app's own.
CLIENT: Final = Address("203.0.113.9")
STRANGER_ADDRESS: Final = Address("198.51.100.7")
GOOGLE_API: Final = Address("142.250.72.27")
PRIVATE: Final = Address("10.0.0.1")  # e.g. the API server's ClusterIP, or a node
METADATA: Final = Address("169.254.169.254")
METADATA_WI: Final = Address("169.254.169.252")
NODE_LOCAL_DNS: Final = Address("169.254.20.10")
CLUSTER_DNS: Final = Pod("kube-system", {"k8s-app": "kube-dns"})
NODE_LOCAL_DNS_POD: Final = Pod("kube-system", {"k8s-app": "node-local-dns"})
KUBE_SYSTEM_POD: Final = Pod("kube-system", {"k8s-app": "metrics-server"})
STRANGER_POD: Final = Pod("default", {"app": "curious"})
# The cluster's monitoring, as each cloud runs it (sources in components/gke.py, components/aks.py).
SCRAPERS: Final = {
    "local": Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}),
    "dev": Pod("kube-system", {"rsName": "ama-metrics"}),
    "gke": Pod("gmp-system", {"app.kubernetes.io/name": "collector"}),
}
PORTS: Final = tuple(
    Connection(port, protocol)  # type: ignore[arg-type]
    for port, protocol in ((53, "UDP"), (53, "TCP"), (80, "TCP"), (443, "TCP"), (988, "TCP"),
                           (contract.PORT, "TCP"), (contract.METRICS_PORT, "TCP"), (22, "TCP"))
)  # fmt: skip


def workload_pod(run: harness.StackRun, type_: str, name_suffix: str = "") -> Pod:
    """The stack's one workload of ``type_`` (named ``*name_suffix``), as its pods: see ``pod_of``."""
    return pod_of(run.one(type_, name_suffix))


def pod_of(registration: harness.Registration) -> Pod:
    """A workload's pods as policies see them: namespace, template labels, named container ports."""
    obj = harness.manifest(registration)
    template = obj["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in pod_spec(registration)["containers"] for p in c.get("ports", [])}
    return Pod(obj["metadata"]["namespace"], template["metadata"]["labels"], ports)


def peers(stack: str, run: harness.StackRun) -> dict[str, Peer]:
    server, trainer = workload_pod(run, DEPLOYMENT), workload_pod(run, JOB, TRAIN)
    publisher = workload_pod(run, JOB, PUBLISH)
    neighbour = Pod(server.namespace, {"app": "neighbour"})
    return {
        "client": CLIENT, "stranger address": STRANGER_ADDRESS, "google api": GOOGLE_API, "private": PRIVATE,
        "metadata": METADATA, "metadata wi": METADATA_WI, "node-local dns": NODE_LOCAL_DNS,
        "cluster dns": CLUSTER_DNS, "node-local dns pod": NODE_LOCAL_DNS_POD, "kube-system pod": KUBE_SYSTEM_POD,
        "stranger pod": STRANGER_POD, "neighbour": neighbour,
        "scraper": SCRAPERS[stack], "server": server, "trainer": trainer, "publisher": publisher,
    }  # fmt: skip


def reachable(run: harness.StackRun, stack: str, pod: Pod, direction: str) -> set[tuple[str, int, str]]:
    """Every (peer, port, protocol) the policies allow into (``in``) or out of (``out``) ``pod``."""
    policies = Policies.of(run)
    found: set[tuple[str, int, str]] = set()
    for (name, peer), connection in itertools.product(peers(stack, run).items(), PORTS):
        if peer == pod:
            continue
        source, destination = (peer, pod) if direction == "in" else (pod, peer)
        if policies.allows(source, destination, connection):
            found.add((name, connection.port, connection.protocol))
    return found


def dns(*names: str) -> set[tuple[str, int, str]]:
    return {(name, 53, protocol) for name in names for protocol in ("UDP", "TCP")}


# What each pod needs out: DNS everywhere, from the kube-dns pods or the node's node-local-dns pod;
# on GKE what the gcsfuse sidecar in the pod reaches too (the metadata server, Google's APIs on 443
# at any public address, as NetworkPolicy names no host) and the DNS the node answers. AKS's Azure
# Files and kind's volume are mounted by the node.
DNS_PODS: Final = dns("cluster dns", "node-local dns pod")
GKE_OUT: Final = {
    *DNS_PODS, *dns("metadata", "node-local dns"),
    ("metadata wi", 988, "TCP"), ("metadata", 80, "TCP"),
    ("google api", 443, "TCP"), ("client", 443, "TCP"), ("stranger address", 443, "TCP"),
}  # fmt: skip
NEEDED_OUT: Final = {"local": DNS_PODS, "dev": DNS_PODS, "gke": GKE_OUT}
# The workloads whose pods the policies govern: the training Job, the publish Job, the servers.
WORKLOADS: Final = [(JOB, TRAIN), (JOB, PUBLISH), (DEPLOYMENT, "")]


@pytest.mark.parametrize("stack", STACKS)
def test_the_server_takes_https_from_the_load_balancers_callers_and_metrics_from_monitoring_only(
    shipped: Runs, stack: str
) -> None:
    run = shipped[stack]
    allowed = reachable(run, stack, workload_pod(run, DEPLOYMENT), "in")
    if stack == "local":  # no allowedSourceRanges: the TLS port is open to all, like the load balancer,
        # but for the app's own namespace, whose pods may not send it anything (default-deny egress)
        own = {"server", "trainer", "publisher", "neighbour"}
        https = {(name, contract.PORT, "TCP") for name in peers(stack, run) if name not in own}
    else:  # the ranges hold inside the cluster too: no pod goes around them
        https = {("client", contract.PORT, "TCP")}
    assert allowed == {*https, ("scraper", contract.METRICS_PORT, "TCP")}, stack


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_accepts_its_metrics_port_from_monitoring_and_nothing_else(shipped: Runs, stack: str) -> None:
    """The cluster's collector scrapes the trainer's progress while the Job runs; nobody else gets in."""
    run = shipped[stack]
    trainer = workload_pod(run, JOB, TRAIN)
    assert reachable(run, stack, trainer, "in") == {("scraper", contract.METRICS_PORT, "TCP")}, stack


@pytest.mark.parametrize("stack", STACKS)
def test_the_publisher_accepts_nothing(shipped: Runs, stack: str) -> None:
    """It serves nothing, not even metrics: no connection reaches it, the collector's included."""
    run = shipped[stack]
    assert reachable(run, stack, workload_pod(run, JOB, PUBLISH), "in") == set(), stack


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("type_", "name_suffix"), WORKLOADS)
def test_pods_reach_only_what_they_need(shipped: Runs, stack: str, type_: str, name_suffix: str) -> None:
    """The store is all the trainer and the publisher reach, as the servers: what its driver needs from the pod."""
    run = shipped[stack]
    pod = workload_pod(run, type_, name_suffix)
    assert reachable(run, stack, pod, "out") == NEEDED_OUT[stack], (stack, type_, name_suffix)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("type_", "name_suffix"), WORKLOADS)
def test_dns_on_gke_through_nodelocal_dnscache_pods(shipped: Runs, stack: str, type_: str, name_suffix: str) -> None:
    """Bug: the DNS rule allowed the kube-dns pods only. GKE Standard runs NodeLocal DNSCache by default
    from 1.34.1-gke.3720000, Dataplane V2 may hand a pod's lookups to the node's node-local-dns pod, and
    the 169.254.20.10/32 ipBlock never matches a pod there: the lookups were dropped. Every workload pod
    reaches both DNS pods on 53 over UDP and TCP, on every stack, and nothing else in kube-system."""
    run = shipped[stack]
    pod = workload_pod(run, type_, name_suffix)
    kube_system = {
        name for name, peer in peers(stack, run).items() if isinstance(peer, Pod) and peer.namespace == "kube-system"
    }
    in_kube_system = {out for out in reachable(run, stack, pod, "out") if out[0] in kube_system}
    assert in_kube_system == DNS_PODS, (stack, type_, name_suffix)


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_of_a_stack_is_isolated_both_ways(shipped: Runs, stack: str) -> None:
    run = shipped[stack]
    policies = Policies.of(run)
    for type_ in (JOB, DEPLOYMENT, DAEMONSET):
        for registration in run.of_type(type_):
            assert policies.isolates(pod_of(registration)) == {"Ingress", "Egress"}, registration.urn


def test_the_device_plugin_reaches_nothing_and_nothing_reaches_it(shipped: Runs) -> None:
    """It speaks to the kubelet over a Unix socket in its hostPath; it needs no network at all."""
    run = shipped["dev"]
    policies = Policies.of(run)
    plugin = Pod(aks.DEVICE_PLUGIN_NAMESPACE, aks.DEVICE_PLUGIN_MATCH)
    for (_, peer), connection in itertools.product(peers("dev", run).items(), PORTS):
        assert not policies.allows(plugin, peer, connection), (peer, connection)
        assert not policies.allows(peer, plugin, connection), (peer, connection)


def test_without_source_ranges_the_https_port_is_open_and_the_metrics_port_still_closed(
    shared_run: SharedRun,
) -> None:
    run = shared_run("gke", overrides={"allowedSourceRanges": []})
    server = workload_pod(run, DEPLOYMENT)
    policies = Policies.of(run)
    assert policies.allows(STRANGER_ADDRESS, server, Connection(contract.PORT))
    assert policies.allows(STRANGER_POD, server, Connection(contract.PORT))
    assert not policies.allows(STRANGER_POD, server, Connection(contract.METRICS_PORT))
