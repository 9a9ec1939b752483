"""The serving endpoint's TLS: the names its certificate carries and how long each certificate lives.

Pure: the workloads component builds its CA, its server certificate and its
Secret from these values, and the tests read the same ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

HOURS_PER_DAY: Final = 24
HOURS_PER_YEAR: Final = 365 * HOURS_PER_DAY

# How long each certificate the stack makes lives, and how long before its end `pulumi up`
# replaces it. The tls provider's plan marks a certificate `ready_for_renewal` and requires its
# replacement once the time is past `validity_end_time - early_renewal_hours`
# (hashicorp/terraform-provider-tls, internal/provider/common_cert.go,
# modifyPlanIfCertificateReadyForRenewal); pulumi-tls 5.x runs that plan in its diff
# (pulumi/pulumi-tls provider/resources.go bridges the provider through the Plugin Framework;
# pulumi/pulumi-terraform-bridge pkg/pf/tfbridge/provider_diff.go turns the plan's
# RequiresReplace into replace keys). Only a `pulumi up` run inside the window renews: nothing
# runs by itself between two updates.
SERVER_VALIDITY_HOURS: Final = HOURS_PER_YEAR
SERVER_EARLY_RENEWAL_HOURS: Final = 30 * HOURS_PER_DAY
CA_VALIDITY_HOURS: Final = 10 * HOURS_PER_YEAR
CA_EARLY_RENEWAL_HOURS: Final = HOURS_PER_YEAR

# The names a client on this machine uses through `kubectl port-forward`.
LOCAL_DNS_NAMES: Final = ("localhost",)
LOCAL_IP_ADDRESSES: Final = ("127.0.0.1",)
# Kubernetes' default cluster domain: a Service is <svc>.<ns>.svc.cluster.local inside the
# cluster (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/). A cluster
# set up with another domain still reaches the Service by <svc>.<ns>.svc.
CLUSTER_DOMAIN: Final = "cluster.local"


@dataclass(frozen=True)
class CertificateNames:
    """The subject alternative names of the server certificate: DNS names, then IP addresses."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every name a pod in the cluster can call the Service by."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
    )


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def certificate_names(service: str, namespace: str, load_balancer: Iterable[str] = ()) -> CertificateNames:
    """The names the server certificate carries: the load balancer's addresses (IPs as IP
    addresses, host names as DNS names) first, then ``localhost`` and the in-cluster names.

    ``load_balancer`` is empty where the cluster gives the Service no external address (kind).
    """
    external = list(dict.fromkeys(load_balancer))
    dns = [a for a in external if not _is_ip(a)] + [*LOCAL_DNS_NAMES, *service_dns_names(service, namespace)]
    ips = [str(ipaddress.ip_address(a)) for a in external if _is_ip(a)] + list(LOCAL_IP_ADDRESSES)
    return CertificateNames(dns_names=tuple(dict.fromkeys(dns)), ip_addresses=tuple(dict.fromkeys(ips)))
