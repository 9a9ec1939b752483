"""Who may talk to the workloads' pods, and whom they may talk to: the NetworkPolicies, as pure builders.

The app's namespace denies every connection in and out (``default_deny``); each role then gets
exactly what it needs:

- the server: its TLS port from the load balancer's allowed callers (anyone, when
  ``allowedSourceRanges`` is empty), its metrics port from the cluster's monitoring only;
- the trainer: its metrics port from the cluster's monitoring only, while the Job runs;
- the publisher: nothing in;
- all three: DNS (the cluster's DNS pods: kube-dns and, where it runs, NodeLocal DNSCache's; and
  what the target answers on the node), and what the model store's driver reaches from inside the
  pod (GKE's gcsfuse sidecar: Google's APIs and the metadata server; nothing for a volume the node
  mounts).

Nothing else leaves the pods. Images are pulled by the node's container runtime at the kubelet's
request (https://kubernetes.io/docs/concepts/containers/images/), from the node's network, never
the pod's, so the registry needs no egress rule; and the kubelet's probes come from the node,
which a NetworkPolicy never blocks ("traffic to and from the node where a Pod is running is always
allowed, regardless of the IP address of the Pod or the node":
https://kubernetes.io/docs/concepts/services-networking/network-policies/).

A NetworkPolicy is enforced only by a network plugin that implements it; the cloud targets turn
one on (components/aks.py, components/gke.py), and docs/ says what enforces it on kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import pulumi_kubernetes as k8s

from components.target import Destination, Peer
from mlapp import contract

INGRESS: Final = "Ingress"
EGRESS: Final = "Egress"
# Every namespace carries its own name as this label, set by the API server (Kubernetes >= 1.22):
# https://kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-metadata-name
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# The cluster's DNS: CoreDNS (AKS, kind) and kube-dns (GKE) pods both carry k8s-app=kube-dns in
# kube-system, the label the kube-dns Service selects on
# (https://kubernetes.io/docs/tasks/administer-cluster/dns-debugging-resolution/, "Check if the DNS pod is running").
CLUSTER_DNS: Final = Peer(namespace="kube-system", pod_labels={"k8s-app": "kube-dns"})
# NodeLocal DNSCache: the DaemonSet node-local-dns in kube-system, pod label k8s-app: node-local-dns
# (kubernetes/kubernetes cluster/addons/dns/nodelocaldns/nodelocaldns.yaml). GKE Standard runs it by
# default from 1.34.1-gke.3720000 (https://cloud.google.com/kubernetes-engine/docs/how-to/nodelocal-dns-cache).
# On Cilium (GKE Dataplane V2) a pod's lookups to the kube-dns Service or to 169.254.20.10 may be
# redirected to the node's node-local-dns pod (a local redirect: kubernetes-sigs/agent-sandbox
# examples/policy/network-policy-management/dns_poc_walkthrough.md), and Cilium never matches a pod's
# or a node's address by an ipBlock (cilium/cilium#46571; gke-labs/kube-agents#777), so the policy
# must name those pods; gke-labs/kube-agents allows both selectors, as here, beside 169.254.20.10/32
# (components/gke.py NODE_DNS). Not verified on GKE: whether its node-local-dns pods use the host's
# network, as upstream's do (a host-network pod has its node's identity under Cilium, which a pod
# selector does not match either); hence the selector and the address both. Where no node-local-dns
# runs (AKS, kind) the peer matches nothing; a self-managed cluster running the upstream add-on
# needs it too.
NODE_LOCAL_DNS: Final = Peer(namespace="kube-system", pod_labels={"k8s-app": "node-local-dns"})
DNS_SERVERS: Final = (CLUSTER_DNS, NODE_LOCAL_DNS)
DNS_PORT: Final = 53


def _selector(labels: Mapping[str, str]) -> k8s.meta.v1.LabelSelectorArgs:
    """Pods with all of ``labels``; no labels: every pod (the empty selector)."""
    return k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels) or None)


def _in_namespace(peer: Peer) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Pods of ``peer.namespace`` (those with ``peer.pod_labels``): both selectors in one peer, so both must match."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=_selector({NAMESPACE_NAME_LABEL: peer.namespace}),
        pod_selector=_selector(peer.pod_labels),
    )


def _ports(protocol: str, *ports: int | str) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol=protocol, port=port) for port in ports]


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Name lookups through the cluster's DNS pods (``DNS_SERVERS``), over UDP and (for long answers) TCP."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[_in_namespace(server) for server in DNS_SERVERS],
        ports=[*_ports("UDP", DNS_PORT), *_ports("TCP", DNS_PORT)],
    )


def destination_egress(destination: Destination) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    block = k8s.networking.v1.IPBlockArgs(cidr=destination.cidr, except_=list(destination.except_cidrs) or None)
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=block)],
        ports=_ports(destination.protocol, *destination.ports),
    )


def workload_egress(egress: Sequence[Destination]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """What the trainer, the publisher and the servers may connect to: the cluster's DNS pods, and ``egress``
    (the DNS addresses the target's nodes answer on, what the model store's driver needs)."""
    return [dns_egress(), *(destination_egress(d) for d in egress)]


def default_deny() -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Every pod of the namespace: nothing in, nothing out, unless another policy allows it."""
    return isolated({})


def server_policy(
    pod_labels: Mapping[str, str],
    allowed_source_ranges: Sequence[str],
    scrapers: Sequence[Peer],
    egress: Sequence[Destination],
) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """The servers: the TLS port from the load balancer's callers, the metrics port from monitoring.

    The public Service keeps the client's address (``externalTrafficPolicy: Local``), so the
    policy sees the same callers ``loadBalancerSourceRanges`` admits and holds them to those
    ranges inside the cluster too: a pod cannot go around the load balancer's list. With no
    ranges the TLS port is open to all, as the load balancer is.
    """
    callers = [
        k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
        for cidr in allowed_source_ranges
    ]
    ingress = [
        # No `from`: every source. A list of ipBlocks: those ranges only.
        k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=callers or None, ports=_ports("TCP", contract.PORT_NAME))
    ]
    ingress.extend(metrics_ingress(scrapers))
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=_selector(pod_labels),
        policy_types=[INGRESS, EGRESS],
        ingress=ingress,
        egress=workload_egress(egress),
    )


def metrics_ingress(scrapers: Sequence[Peer]) -> list[k8s.networking.v1.NetworkPolicyIngressRuleArgs]:
    """The metrics port (by name), from the cluster's monitoring pods only; none named: it stays closed."""
    if not scrapers:
        return []
    return [
        k8s.networking.v1.NetworkPolicyIngressRuleArgs(
            from_=[_in_namespace(peer) for peer in scrapers], ports=_ports("TCP", contract.METRICS_PORT_NAME)
        )
    ]


def trainer_policy(
    pod_labels: Mapping[str, str],
    scrapers: Sequence[Peer],
    egress: Sequence[Destination],
    *,
    peers: bool = False,
) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """The trainer: in, its metrics port from the cluster's monitoring (nothing else: an empty list of
    rules admits nothing); out, only what it needs.

    ``peers`` (a multi-node Job): the training pods also reach each other, on every port: the
    rendezvous store's port, and the ports gloo and NCCL open for their connections, which they pick
    from the ephemeral range (tests/stacks/test_distributed_training.py's ranks connect on such ports).
    Only pods with the trainer's labels, in this namespace (a podSelector alone selects there).
    """
    fellow = [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=_selector(pod_labels))]
    ingress = [
        *metrics_ingress(scrapers),
        *([k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=fellow)] if peers else []),
    ]
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=_selector(pod_labels),
        policy_types=[INGRESS, EGRESS],
        ingress=ingress or None,
        egress=[
            *workload_egress(egress),
            *([k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=fellow)] if peers else []),
        ],
    )


def publisher_policy(
    pod_labels: Mapping[str, str], egress: Sequence[Destination]
) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """The publish step: nothing in (it serves nothing, not even metrics); out, only what the store needs,
    as the trainer's."""
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=_selector(pod_labels), policy_types=[INGRESS, EGRESS], egress=workload_egress(egress)
    )


def isolated(pod_labels: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Pods that use no network at all (the device plugin speaks to the kubelet over a Unix socket)."""
    return k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=_selector(pod_labels), policy_types=[INGRESS, EGRESS])
