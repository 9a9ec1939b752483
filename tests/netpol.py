"""What a set of NetworkPolicies lets through, by the Kubernetes rules: the tests ask it, per stack,
whether each connection a pod needs is allowed and every other one refused.

The semantics (https://kubernetes.io/docs/concepts/services-networking/network-policies/): a pod is
isolated in a direction when some policy of its namespace selects it with that type; an isolated
pod accepts a connection when any selecting policy has a rule whose peers and ports match it (the
policies add up); a peer with both a namespaceSelector and a podSelector matches pods meeting both;
an ipBlock matches addresses in its CIDR outside its exceptions; a rule without peers matches every
peer and one without ports every port; a named port is the pod's container port of that name. A
connection needs the sender's egress and the receiver's ingress to allow it. The selector matching
and the default policyTypes are the policy pack's own (policy/rules.py), so the two cannot disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policy.rules import policy_types, selector_matches
from tools import harness

Direction = Literal["Ingress", "Egress"]


@dataclass(frozen=True)
class Pod:
    """A pod by what policies see of it: namespace (and its labels), labels, named container ports."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def all_namespace_labels(self) -> dict[str, str]:
        # The API server labels every namespace with its own name.
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


@dataclass(frozen=True)
class Address:
    """Something outside the cluster's pods, by IP address."""

    ip: str


Peer = Pod | Address


@dataclass(frozen=True)
class Connection:
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


def _in_block(block: Mapping[str, Any], peer: Peer) -> bool:
    # An ipBlock is for addresses outside the cluster; the engines (Cilium: AKS, GKE Dataplane V2) never
    # match a pod by its IP through one.
    if not isinstance(peer, Address):
        return False
    ip = ipaddress.ip_address(peer.ip)
    if ip not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(ip in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])


def _peer_matches(rule_peer: Mapping[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return _in_block(rule_peer["ipBlock"], peer)
    if not isinstance(peer, Pod):
        return False
    if "namespaceSelector" in rule_peer:
        if not selector_matches(rule_peer["namespaceSelector"], peer.all_namespace_labels()):
            return False
    elif peer.namespace != policy_namespace:  # a podSelector alone: pods of the policy's namespace
        return False
    return selector_matches(rule_peer.get("podSelector") or {}, peer.labels)


def _port_matches(rule_port: Mapping[str, Any], target: Pod | None, connection: Connection) -> bool:
    if (rule_port.get("protocol") or "TCP") != connection.protocol:
        return False
    port = rule_port.get("port")
    if port is None:
        return True
    if isinstance(port, str):  # a named port: of the pod that receives the connection
        return target is not None and target.ports.get(port) == connection.port
    end = rule_port.get("endPort") or port
    return int(port) <= connection.port <= int(end)


@dataclass(frozen=True)
class Policies:
    """A stack's NetworkPolicies, as applied."""

    manifests: Sequence[Mapping[str, Any]]

    @classmethod
    def of(cls, run: harness.StackRun) -> Policies:
        return cls([m for _, m in harness.kubernetes_manifests(run) if m["kind"] == "NetworkPolicy"])

    def _selecting(self, pod: Pod, direction: Direction) -> list[Mapping[str, Any]]:
        selecting = []
        for policy in self.manifests:
            if (
                policy["metadata"].get("namespace", "default") == pod.namespace
                and direction in policy_types(policy)
                and selector_matches(policy["spec"].get("podSelector") or {}, pod.labels)
            ):
                selecting.append(policy)
        return selecting

    def _allows(self, pod: Pod, direction: Direction, peer: Peer, connection: Connection) -> bool:
        selecting = self._selecting(pod, direction)
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        target = pod if direction == "Ingress" else (peer if isinstance(peer, Pod) else None)
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                ports = rule.get("ports")
                peer_ok = not peers or any(_peer_matches(p, policy["metadata"]["namespace"], peer) for p in peers)
                port_ok = not ports or any(_port_matches(p, target, connection) for p in ports)
                if peer_ok and port_ok:
                    return True
        return False

    def allows(self, source: Peer, destination: Peer, connection: Connection) -> bool:
        """Whether ``source`` may open ``connection`` to ``destination``: its egress and the other's ingress."""
        egress_ok = not isinstance(source, Pod) or self._allows(source, "Egress", destination, connection)
        ingress_ok = not isinstance(destination, Pod) or self._allows(destination, "Ingress", source, connection)
        return egress_ok and ingress_ok

    def isolates(self, pod: Pod) -> set[str]:
        """The directions in which ``pod`` is isolated."""
        directions: tuple[Direction, ...] = ("Ingress", "Egress")
        return {d for d in directions if self._selecting(pod, d)}
