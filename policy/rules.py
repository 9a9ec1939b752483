"""mlstack's review rules as pure functions: ``rule(resource_type, props) -> [message, ...]``.

``props`` are a resource's inputs as the Pulumi engine sends them to a policy
pack: camelCase wire names, numbers as floats. The same functions run inside
the policy pack (``policy/__main__.py``) and in the tests, which feed them the
registrations of the program run under mocks, so this module imports nothing
but the standard library.

A value the engine does not know yet (an image digest during a first preview)
cannot be judged: a rule skips it rather than fail on it, and judges it on
``pulumi up``, when it is known.

A Kubernetes object may be exempted from a named rule with two annotations,
both required, so that every exemption is explained where reviewers see it:

    mlstack.io/policy-exempt: "non-root,image-digest"
    mlstack.io/policy-exempt-reason: "why, in a sentence"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

GPU_RESOURCE: Final = "nvidia.com/gpu"
# Kept equal to components/target.py (a test checks): the policy pack runs in its own
# venv and directory, so it cannot import the program.
GPU_TAINT_KEY: Final = "nvidia.com/gpu"
GPU_TAINT_VALUE: Final = "present"
GPU_TAINT_EFFECT: Final = "NoSchedule"
AKS_GPU_TAINT: Final = f"{GPU_TAINT_KEY}={GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}"
GKE_GPU_TAINT_EFFECT: Final = "NO_SCHEDULE"
# The label the AKS target puts on its GPU pool (components/aks.py).
AKS_GPU_POOL_LABEL: Final = ("mlstack.io/pool", "gpu")
# Azure's GPU VM families all start with N: NC, ND, NG, NV.
AKS_GPU_VM_SIZE: Final = re.compile(r"^standard_n[a-z]", re.IGNORECASE)

EXEMPT_ANNOTATION: Final = "mlstack.io/policy-exempt"
EXEMPT_REASON_ANNOTATION: Final = "mlstack.io/policy-exempt-reason"

# Only the types mlstack ships: basic-auth (the inference password) and tls (the server's
# certificate and key). Opaque is refused on purpose: it says nothing of what it holds, so a
# reviewer cannot tell a stray credential from an intended one; clusters pull images through
# their cloud identity, never a dockerconfigjson, and long-lived service-account tokens are
# exactly what we avoid.
ALLOWED_SECRET_TYPES: Final = frozenset({"kubernetes.io/basic-auth", "kubernetes.io/tls"})

DIGEST_REF: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
# Words (after splitting camelCase and separators) that make a ConfigMap key look secret.
_SECRET_WORDS: Final = re.compile(
    r"(^|_)(password|passwd|pwd|passphrase|secret|token|credentials?|apikey|"
    r"(api|private|access|secret|signing|encryption)_key|client_secret|auth_token)(_|$)"
)

# Kubernetes kinds whose objects hold a pod spec, and where it is.
_POD_SPEC_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# --- Pod Security Standards, as the built-in admission plugin checks them for Kubernetes v1.33
# (kubernetes/pod-security-admission v0.33.9, policy/check_*.go; the controls and their allowed
# values: https://kubernetes.io/docs/concepts/security/pod-security-standards/).
PSA_ENFORCE_LABEL: Final = "pod-security.kubernetes.io/enforce"
# Baseline, "Capabilities": what a container may add. Restricted narrows it to NET_BIND_SERVICE.
BASELINE_CAPABILITIES: Final = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
RESTRICTED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
# Restricted, "Volume Types" ("image" from v1.33: check_restrictedVolumes.go).
RESTRICTED_VOLUME_TYPES: Final = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
    "image",
})  # fmt: skip
# Baseline, "Sysctls": the safe set, as of v1.33.
SAFE_SYSCTLS: Final = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
})  # fmt: skip
SELINUX_TYPES: Final = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_CONFINED: Final = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"

# --- the model store: roles that read a GCS bucket and cannot change it
# (https://cloud.google.com/storage/docs/access-control/iam-roles).
GCS_BUCKET_MEMBER: Final = "gcp:storage/bucketIAMMember:BucketIAMMember"
GCS_BUCKET_BINDING: Final = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
GCS_READ_ONLY_ROLES: Final = frozenset(
    {"roles/storage.objectViewer", "roles/storage.legacyObjectReader", "roles/storage.legacyBucketReader"}
)

AKS_AGENT_POOL: Final = "azure-native:containerservice:AgentPool"
AKS_MANAGED_CLUSTER: Final = "azure-native:containerservice:ManagedCluster"
GKE_NODE_POOL: Final = "gcp:container/nodePool:NodePool"


class Unknown:
    """Stands for a value the engine does not know yet (the policy pack maps its own to it)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = Unknown()


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown)


# --- reading props -------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def kubernetes_kind(resource_type: str) -> str | None:
    """``Deployment`` for ``kubernetes:apps/v1:Deployment``; None for anything not Kubernetes."""
    if not resource_type.startswith("kubernetes:"):
        return None
    return resource_type.rsplit(":", 1)[-1]


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = kubernetes_kind(resource_type)
    if kind not in _POD_SPEC_PATHS:
        return None
    spec = _get(props, *_POD_SPEC_PATHS[kind])
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(field)):
            if isinstance(container, Mapping):
                yield container


def _describe(resource_type: str, props: Mapping[str, Any]) -> str:
    kind = kubernetes_kind(resource_type) or resource_type
    name = _get(props, "metadata", "name")
    return f"{kind} {name}" if isinstance(name, str) and name else kind


def exemptions(props: Mapping[str, Any]) -> tuple[set[str], list[str]]:
    """The rules this object is exempt from, and problems with the exemption itself."""
    annotations = _dict(_get(props, "metadata", "annotations"))
    listed = annotations.get(EXEMPT_ANNOTATION)
    if not isinstance(listed, str) or not listed.strip():
        return set(), []
    names = {n.strip() for n in listed.split(",") if n.strip()}
    reason = annotations.get(EXEMPT_REASON_ANNOTATION)
    if not isinstance(reason, str) or not reason.strip():
        return set(), [
            f"exemption from {', '.join(sorted(names))} has no reason: add the annotation "
            f"{EXEMPT_REASON_ANNOTATION} saying why, or remove {EXEMPT_ANNOTATION}"
        ]
    unknown = names - set(RULES_BY_NAME)
    if unknown:
        return set(), [
            f"{EXEMPT_ANNOTATION} names unknown rules {', '.join(sorted(unknown))}: "
            f"use one of {', '.join(sorted(RULES_BY_NAME))}"
        ]
    return names, []


# --- Kubernetes workloads ------------------------------------------------------------


def _requests_gpu(container: Mapping[str, Any]) -> bool:
    resources = _dict(container.get("resources"))
    return any(GPU_RESOURCE in _dict(resources.get(part)) for part in ("limits", "requests"))


def tolerates_gpu_taint(toleration: Mapping[str, Any]) -> bool:
    """Whether one toleration lets a pod onto a node tainted ``nvidia.com/gpu=present:NoSchedule``."""
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    effect = toleration.get("effect") or ""
    if effect not in ("", GPU_TAINT_EFFECT):
        return False
    if operator == "Exists":
        return key in ("", GPU_TAINT_KEY)
    return operator == "Equal" and key == GPU_TAINT_KEY and toleration.get("value") == GPU_TAINT_VALUE


def gpu_pods_tolerate_gpu_taint(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    asking = [str(c.get("name")) for c in containers(spec) if _requests_gpu(c)]
    if not asking:
        return []
    if any(isinstance(t, Mapping) and tolerates_gpu_taint(t) for t in _list(spec.get("tolerations"))):
        return []
    return [
        f"{_describe(resource_type, props)}: container(s) {', '.join(asking)} request {GPU_RESOURCE} but the pod "
        f"does not tolerate the GPU pool's taint: add the toleration {{key: {GPU_TAINT_KEY}, operator: Equal, "
        f"value: {GPU_TAINT_VALUE}, effect: {GPU_TAINT_EFFECT}}} (the target's GpuScheduling.tolerations)"
    ]


def deployments_have_probes_and_limits(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kubernetes_kind(resource_type) != "Deployment":
        return []
    spec = pod_spec(resource_type, props) or {}
    messages = []
    for container in _list(spec.get("containers")):
        name = container.get("name")
        missing = [probe for probe in ("readinessProbe", "livenessProbe") if not container.get(probe)]
        if missing:
            messages.append(
                f"{_describe(resource_type, props)}: container {name} has no {' and no '.join(missing)}: "
                "add them on the app's health endpoints (/v2/health/ready, /v2/health/live)"
            )
        limits = _dict(_get(container, "resources", "limits"))
        if is_unknown(_get(container, "resources", "limits")):
            continue
        absent = [r for r in ("cpu", "memory") if r not in limits]
        if absent:
            messages.append(
                f"{_describe(resource_type, props)}: container {name} has no {' and no '.join(absent)} limit: "
                f"set resources.limits.{absent[0]} so one pod cannot starve its node"
            )
    return messages


def containers_run_as_non_root(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    pod_non_root = _get(spec, "securityContext", "runAsNonRoot")
    messages = []
    for container in containers(spec):
        context = _dict(container.get("securityContext"))
        non_root = context.get("runAsNonRoot", pod_non_root)
        where = f"{_describe(resource_type, props)}: container {container.get('name')}"
        if non_root is not True and not is_unknown(non_root):
            messages.append(
                f"{where} may run as root: set securityContext.runAsNonRoot: true on the pod or the container"
            )
        escalation = context.get("allowPrivilegeEscalation")
        if context.get("privileged") is True:
            messages.append(f"{where} is privileged: remove securityContext.privileged")
        elif escalation is not False and not is_unknown(escalation):
            messages.append(
                f"{where} may gain privileges: set securityContext.allowPrivilegeEscalation: false on the container"
            )
    return messages


def images_pinned_by_digest(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    messages = []
    for container in containers(spec):
        image = container.get("image")
        if is_unknown(image):
            continue
        if not isinstance(image, str) or not DIGEST_REF.search(image):
            messages.append(
                f"{_describe(resource_type, props)}: container {container.get('name')} runs image {image!r}, "
                "not pinned by digest: use <repository>[:tag]@sha256:<digest> (the built image's ref), "
                "so what was reviewed is what runs"
            )
    return messages


def _words(key: str) -> str:
    """``dbPassword`` and ``DB-PASSWORD`` both become ``db_password``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def looks_secret(key: str) -> bool:
    words = _words(key)
    return bool(_SECRET_WORDS.search(words) or _SECRET_WORDS.search(words.replace("_", "")))


def config_maps_hold_no_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kubernetes_kind(resource_type) != "ConfigMap":
        return []
    keys = [*_dict(props.get("data")), *_dict(props.get("binaryData"))]
    return [
        f"{_describe(resource_type, props)}: key {key!r} looks like a secret, and a ConfigMap is stored and shown "
        "in plain text: move it to the basic-auth Secret (from `pulumi config set --secret`) and inject it "
        "with secretKeyRef"
        for key in keys
        if looks_secret(key)
    ]


def secrets_of_allowed_types(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kubernetes_kind(resource_type) != "Secret":
        return []
    secret_type = props.get("type")
    if is_unknown(secret_type) or secret_type in ALLOWED_SECRET_TYPES:
        return []
    shown = secret_type if isinstance(secret_type, str) else "Opaque (no type given)"
    return [
        f"{_describe(resource_type, props)} is of type {shown}: mlstack ships only "
        f"{', '.join(sorted(ALLOWED_SECRET_TYPES))} Secrets; give it that type, or argue for the new type in "
        "policy/rules.py (ALLOWED_SECRET_TYPES)"
    ]


def load_balancers_restrict_sources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kubernetes_kind(resource_type) != "Service" or _get(props, "spec", "type") != "LoadBalancer":
        return []
    ranges = _get(props, "spec", "loadBalancerSourceRanges")
    if is_unknown(ranges) or _list(ranges):
        return []
    return [
        f"{_describe(resource_type, props)}: a LoadBalancer open to the whole internet: set "
        "mlstack:allowedSourceRanges (loadBalancerSourceRanges) to the CIDRs that may call the model"
    ]


# --- Pod Security Standards ----------------------------------------------------------


def _known(value: Any) -> bool:
    return value is not None and not is_unknown(value)


def _context_checks(where: str, context: Mapping[str, Any]) -> list[str]:
    """The baseline controls a pod's or a container's securityContext can break."""
    found = []
    if _get(context, "windowsOptions", "hostProcess") is True:
        found.append(f"{where}: windowsOptions.hostProcess must be unset or false (HostProcess)")
    apparmor = _get(context, "appArmorProfile", "type")
    if _known(apparmor) and apparmor not in SECCOMP_CONFINED:
        found.append(f"{where}: appArmorProfile.type {apparmor} is not RuntimeDefault or Localhost (AppArmor)")
    selinux = _dict(context.get("seLinuxOptions"))
    if _known(selinux.get("type")) and selinux.get("type") not in SELINUX_TYPES:
        found.append(f"{where}: seLinuxOptions.type {selinux['type']} is not allowed (SELinux)")
    for field in ("user", "role"):
        if selinux.get(field) not in (None, "") and not is_unknown(selinux.get(field)):
            found.append(f"{where}: seLinuxOptions.{field} must be unset (SELinux)")
    if _get(context, "seccompProfile", "type") == "Unconfined":
        found.append(f"{where}: seccompProfile.type must not be Unconfined (Seccomp)")
    if _known(context.get("runAsUser")) and context.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser must not be 0 (Running as Non-root user)")
    return found


def _container_checks(container: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    """The baseline and restricted controls of one container, given its pod's securityContext."""
    where = f"container {container.get('name')}"
    context = _dict(container.get("securityContext"))
    found = _context_checks(where, context)
    if context.get("privileged") is True:
        found.append(f"{where}: privileged must be unset or false (Privileged Containers)")
    if context.get("procMount") not in (None, "Default") and not is_unknown(context.get("procMount")):
        found.append(f"{where}: procMount must be Default (/proc Mount Type)")
    if context.get("allowPrivilegeEscalation") is not False and not is_unknown(context.get("allowPrivilegeEscalation")):
        found.append(f"{where}: allowPrivilegeEscalation must be false (Privilege Escalation)")
    non_root = context.get("runAsNonRoot", pod.get("runAsNonRoot"))
    if context.get("runAsNonRoot") is False or (non_root is not True and not is_unknown(non_root)):
        found.append(f"{where}: runAsNonRoot must be true, on the container or the pod (Running as Non-root)")
    seccomp = _get(context, "seccompProfile", "type") or _get(pod, "seccompProfile", "type")
    if seccomp not in SECCOMP_CONFINED and not is_unknown(seccomp):
        found.append(
            f"{where}: seccompProfile.type must be RuntimeDefault or Localhost, on the container or the pod (Seccomp)"
        )
    capabilities = _dict(context.get("capabilities"))
    drop, add = capabilities.get("drop"), capabilities.get("add")
    if not is_unknown(drop) and "ALL" not in _list(drop):
        found.append(f"{where}: capabilities.drop must include ALL (Capabilities)")
    extra = sorted(str(c) for c in _list(add) if c not in RESTRICTED_CAPABILITIES)
    if extra:
        found.append(f"{where}: capabilities.add may hold only NET_BIND_SERVICE, not {', '.join(extra)} (Capabilities)")
    ports = [p.get("hostPort") for p in _list(container.get("ports")) if isinstance(p, Mapping)]
    if any(_known(port) and port != 0 for port in ports):
        found.append(f"{where}: hostPort must be unset or 0 (Host Ports)")
    return found


def _volume_type(volume: Mapping[str, Any]) -> str:
    sources = [key for key in volume if key != "name"]
    return sources[0] if len(sources) == 1 else "/".join(sorted(sources)) or "none"


def pod_security_restricted(spec: Mapping[str, Any], annotations: Mapping[str, Any] | None = None) -> list[str]:
    """Every way a pod spec breaks the "restricted" Pod Security Standard (v1.33), as the admission
    plugin would refuse it; empty when it passes. ``annotations``: the pod template's (AppArmor's old form)."""
    context = _dict(spec.get("securityContext"))
    found = _context_checks("pod", context)
    for namespace in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(namespace) is True:
            found.append(f"pod: {namespace} must be unset or false (Host Namespaces)")
    for sysctl in _list(context.get("sysctls")):
        name = _dict(sysctl).get("name")
        if _known(name) and name not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {name} is not in the safe set (Sysctls)")
    for volume in _list(spec.get("volumes")):
        kind = _volume_type(_dict(volume))
        if kind not in RESTRICTED_VOLUME_TYPES:
            found.append(
                f"volume {_dict(volume).get('name')}: type {kind} is not allowed; only "
                f"{', '.join(sorted(RESTRICTED_VOLUME_TYPES))} (Volume Types)"
            )
    for key, value in _dict(annotations).items():
        if not key.startswith(APPARMOR_ANNOTATION_PREFIX) or not isinstance(value, str):
            continue
        if value and value != "runtime/default" and not value.startswith("localhost/"):
            found.append(f"annotation {key}: {value} is not runtime/default or localhost/* (AppArmor)")
    for container in containers(spec):
        found.extend(_container_checks(container, context))
    return found


def pod_template_metadata(resource_type: str, props: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    """A field (``labels``, ``annotations``) of the pods' metadata: a Pod's own, else its template's."""
    kind = kubernetes_kind(resource_type)
    if kind == "Pod":
        return _dict(_get(props, "metadata", field))
    path = _POD_SPEC_PATHS.get(kind or "", ())[:-1]  # the template, whose spec holds the pod spec
    return _dict(_get(props, *path, "metadata", field))


def pods_pass_pod_security_restricted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    broken = pod_security_restricted(spec, pod_template_metadata(resource_type, props, "annotations"))
    if not broken:
        return []
    return [
        f"{_describe(resource_type, props)} breaks the restricted Pod Security Standard, so a namespace that "
        f"enforces it refuses its pods: {'; '.join(broken)}"
    ]


def namespaces_enforce_restricted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kubernetes_kind(resource_type) != "Namespace":
        return []
    level = _dict(_get(props, "metadata", "labels")).get(PSA_ENFORCE_LABEL)
    if is_unknown(level) or level == "restricted":
        return []
    return [
        f"{_describe(resource_type, props)} enforces Pod Security level {level or 'none'}: label it "
        f"{PSA_ENFORCE_LABEL}: restricted, so the API server refuses any pod that could escalate"
    ]


# --- GPU node pools ------------------------------------------------------------------


def _aks_pool_is_gpu(pool: Mapping[str, Any]) -> bool:
    size = pool.get("vmSize")
    labels = _dict(pool.get("nodeLabels"))
    key, value = AKS_GPU_POOL_LABEL
    return (isinstance(size, str) and bool(AKS_GPU_VM_SIZE.match(size))) or labels.get(key) == value


def _aks_pools(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(description, pool) for every GPU pool an AKS resource declares (a separate or an inline pool)."""
    if resource_type == AKS_AGENT_POOL:
        pools = [(f"AgentPool {props.get('agentPoolName') or ''}".strip(), props)]
    elif resource_type == AKS_MANAGED_CLUSTER:
        pools = [
            (f"ManagedCluster inline pool {p.get('name')}", p)
            for p in _list(props.get("agentPoolProfiles"))
            if isinstance(p, Mapping)
        ]
    else:
        return []
    return [(where, pool) for where, pool in pools if _aks_pool_is_gpu(pool)]


def _gke_gpu_pool(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if resource_type != GKE_NODE_POOL:
        return None
    accelerators = _get(props, "nodeConfig", "guestAccelerators")
    return props if _list(accelerators) else None


def gpu_pools_carry_gpu_taint(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    messages = []
    for where, pool in _aks_pools(resource_type, props):
        taints = pool.get("nodeTaints")
        if not is_unknown(taints) and AKS_GPU_TAINT not in _list(taints):
            messages.append(
                f"{where} ({pool.get('vmSize')}) is a GPU pool without the GPU taint: add {AKS_GPU_TAINT!r} to "
                "nodeTaints, so that only pods that ask for a GPU land on its nodes"
            )
    if _gke_gpu_pool(resource_type, props) is not None:
        taints = _get(props, "nodeConfig", "taints")
        if not is_unknown(taints) and not any(
            isinstance(t, Mapping) and t.get("key") == GPU_TAINT_KEY and t.get("effect") == GKE_GPU_TAINT_EFFECT
            for t in _list(taints)
        ):
            messages.append(
                f"NodePool {props.get('name') or ''} has guest accelerators but no GPU taint: add "
                f"nodeConfig.taints {{key: {GPU_TAINT_KEY}, value: {GPU_TAINT_VALUE}, effect: "
                f"{GKE_GPU_TAINT_EFFECT}}}, so that only pods that ask for a GPU land on its nodes"
            )
    return messages


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def gpu_pools_scale_to_zero(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    messages = []
    for where, pool in _aks_pools(resource_type, props):
        if pool.get("enableAutoScaling") is True:
            idle = _positive(pool.get("minCount"))
            floor = f"minCount is {pool.get('minCount')}"
        else:
            idle = _positive(pool.get("count"))
            floor = f"autoscaling is off with count {pool.get('count')}"
        if idle:
            messages.append(
                f"{where}: {floor}, so GPU nodes are paid for while nothing trains: enable autoscaling with "
                "minCount 0 (mlstack:gpuMinNodes: 0)"
            )
    if _gke_gpu_pool(resource_type, props) is not None:
        autoscaling = _dict(props.get("autoscaling"))
        if autoscaling:
            floors = {k: autoscaling.get(k) for k in ("minNodeCount", "totalMinNodeCount")}
            above = [f"{k} is {v}" for k, v in floors.items() if _positive(v)]
        else:
            node_count = props.get("nodeCount", props.get("initialNodeCount"))
            above = [f"autoscaling is off with {node_count} nodes"] if _positive(node_count) else []
        if above:
            messages.append(
                f"NodePool {props.get('name') or ''}: {', '.join(above)}, so GPU nodes are paid for while "
                "nothing trains: autoscale from 0 (mlstack:gpuMinNodes: 0)"
            )
    return messages


# --- rules over the whole stack ---------------------------------------------------------
#
# A stack rule sees every resource at once, as (type, props) pairs; it returns each offender's
# props (whose exemption annotations it may carry) with the message.

Resources = Sequence[tuple[str, Mapping[str, Any]]]
Offence = tuple[Mapping[str, Any], str]


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a Kubernetes label selector selects ``labels``: an empty selector selects everything
    (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors)."""
    selector = _dict(selector)
    if any(labels.get(key) != value for key, value in _dict(selector.get("matchLabels")).items()):
        return False
    for expression in _list(selector.get("matchExpressions")):
        key, operator = str(_dict(expression).get("key")), _dict(expression).get("operator")
        values = _list(_dict(expression).get("values"))
        present = key in labels
        holds = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(str(operator), False)
        if not holds:
            return False
    return True


def _namespace(props: Mapping[str, Any]) -> Any:
    return _get(props, "metadata", "namespace") or "default"


def policy_types(policy: Mapping[str, Any]) -> set[str]:
    """The directions a NetworkPolicy isolates; unset: Ingress, and Egress when it has egress rules
    (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/)."""
    spec = _dict(policy.get("spec"))
    declared = spec.get("policyTypes")
    if isinstance(declared, list):
        return {str(t) for t in declared}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def pods_are_selected_by_network_policies(resources: Resources) -> list[Offence]:
    policies = [props for type_, props in resources if kubernetes_kind(type_) == "NetworkPolicy"]
    offences: list[Offence] = []
    for type_, props in resources:
        if pod_spec(type_, props) is None:
            continue
        namespace, labels = _namespace(props), pod_template_metadata(type_, props, "labels")
        if is_unknown(namespace) or any(is_unknown(v) for v in labels.values()):
            continue
        isolated: set[str] = set()
        for policy in policies:
            selects = _get(policy, "spec", "podSelector")
            if _namespace(policy) == namespace and not is_unknown(selects) and selector_matches(selects, labels):
                isolated |= policy_types(policy)
        missing = sorted({"Ingress", "Egress"} - isolated)
        if missing:
            pods = ", ".join(f"{key}={value}" for key, value in sorted(labels.items())) or "without labels"
            offences.append((
                props,
                f"{_describe(type_, props)} (pods {pods}): no NetworkPolicy in namespace {namespace} isolates "
                f"them for {' and '.join(missing)}, so any pod in the cluster reaches them and they reach "
                "anything: select them with a NetworkPolicy (components/network.py) that allows only what they need",
            ))  # fmt: skip
    return offences


def _store_volumes(spec: Mapping[str, Any]) -> dict[str, bool]:
    """The pod's shared-storage volumes (a claim or a CSI volume), each with whether the volume itself is read-only."""
    found = {}
    for entry in _list(spec.get("volumes")):
        volume = _dict(entry)
        for source in ("persistentVolumeClaim", "csi"):
            if source in volume:
                found[str(volume.get("name"))] = _dict(volume[source]).get("readOnly") is True
    return found


def _principal_names(member: str, namespace: str, account: str) -> bool:
    """Whether an IAM member is a Kubernetes service account's Workload Identity principal, in either form:
    principal://…/subject/ns/NS/sa/SA, or serviceAccount:PROJECT.svc.id.goog[NS/SA]
    (https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity)."""
    return member.endswith(f"/subject/ns/{namespace}/sa/{account}") or member.endswith(f"[{namespace}/{account}]")


def servers_only_read_the_store(resources: Resources) -> list[Offence]:
    """Servers (Deployments) mount shared storage read-only and hold no role that writes a bucket."""
    grants = []
    for type_, props in resources:
        if type_ == GCS_BUCKET_MEMBER:
            grants.append((props.get("member"), props.get("role")))
        elif type_ == GCS_BUCKET_BINDING:
            grants.extend((member, props.get("role")) for member in _list(props.get("members")))
    offences: list[Offence] = []
    for type_, props in resources:
        if kubernetes_kind(type_) != "Deployment":
            continue
        spec = pod_spec(type_, props) or {}
        where = _describe(type_, props)
        store = _store_volumes(spec)
        for container in containers(spec):
            for entry in _list(container.get("volumeMounts")):
                mount = _dict(entry)
                name = mount.get("name")
                if name in store and not store[name] and mount.get("readOnly") is not True:
                    offences.append((
                        props,
                        f"{where}: container {container.get('name')} mounts the store volume {name} writable: "
                        "mount it readOnly, so that a compromised server cannot change the models it serves",
                    ))  # fmt: skip
        namespace, account = _namespace(props), spec.get("serviceAccountName") or "default"
        if is_unknown(namespace) or is_unknown(account):
            continue
        for member, role in grants:
            if not isinstance(member, str) or is_unknown(role) or role in GCS_READ_ONLY_ROLES:
                continue
            if _principal_names(member, str(namespace), str(account)):
                offences.append((
                    props,
                    f"{where}: its service account {namespace}/{account} holds {role} on a bucket, which can "
                    f"write objects: grant the servers only {', '.join(sorted(GCS_READ_ONLY_ROLES))}, and the "
                    "trainer's own service account the role that writes",
                ))  # fmt: skip
    return offences


# --- the pack's contents ---------------------------------------------------------------


Check = Callable[[str, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: Literal["mandatory", "advisory"]
    check: Check
    kubernetes: bool  # whether it judges Kubernetes objects (which may carry exemptions)

    def __call__(self, resource_type: str, props: Mapping[str, Any]) -> list[str]:
        """The violations of ``props``, after the object's exemptions."""
        found = self.check(resource_type, props)
        if not found or not self.kubernetes:
            return found
        exempt, problems = exemptions(props)
        # A malformed exemption exempts nothing, and says why next to what it failed to exempt.
        return [] if self.name in exempt else [*problems, *found]


StackCheck = Callable[[Resources], list[Offence]]


@dataclass(frozen=True)
class StackRule:
    """A rule over the whole stack; each offender may be exempted like any Kubernetes object."""

    name: str
    description: str
    level: Literal["mandatory", "advisory"]
    check: StackCheck

    def __call__(self, resources: Resources) -> list[str]:
        """The violations in ``resources``, after each offender's exemptions."""
        messages = []
        for props, message in self.check(resources):
            exempt, problems = exemptions(props)
            if self.name not in exempt:
                messages.extend([*problems, message])
        return messages


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "gpu-pods-tolerate-gpu-taint",
        "Pods that request nvidia.com/gpu tolerate the GPU pools' taint nvidia.com/gpu:NoSchedule.",
        "mandatory",
        gpu_pods_tolerate_gpu_taint,
        kubernetes=True,
    ),
    Rule(
        "gpu-pools-carry-gpu-taint",
        "AKS and GKE GPU node pools carry the taint nvidia.com/gpu=present:NoSchedule.",
        "mandatory",
        gpu_pools_carry_gpu_taint,
        kubernetes=False,
    ),
    Rule(
        "deployments-have-probes-and-limits",
        "Every container of a Deployment has readiness and liveness probes and CPU and memory limits.",
        "mandatory",
        deployments_have_probes_and_limits,
        kubernetes=True,
    ),
    Rule(
        "non-root",
        "Containers run as non-root (runAsNonRoot) without privilege escalation.",
        "mandatory",
        containers_run_as_non_root,
        kubernetes=True,
    ),
    Rule(
        "image-digest",
        "Container images are pinned by digest (@sha256:…).",
        "mandatory",
        images_pinned_by_digest,
        kubernetes=True,
    ),
    Rule(
        "configmaps-hold-no-secrets",
        "No ConfigMap key looks like a secret (password, token, API key, private key, credential…).",
        "mandatory",
        config_maps_hold_no_secrets,
        kubernetes=True,
    ),
    Rule(
        "secret-types",
        "Secrets are only of the types mlstack ships (kubernetes.io/basic-auth, kubernetes.io/tls).",
        "mandatory",
        secrets_of_allowed_types,
        kubernetes=True,
    ),
    Rule(
        "pod-security-restricted",
        "Pods pass the restricted Pod Security Standard (Kubernetes v1.33), which the app's namespace enforces.",
        "mandatory",
        pods_pass_pod_security_restricted,
        kubernetes=True,
    ),
    Rule(
        "namespaces-enforce-restricted",
        "Namespaces enforce the restricted Pod Security Standard (pod-security.kubernetes.io/enforce: restricted).",
        "mandatory",
        namespaces_enforce_restricted,
        kubernetes=True,
    ),
    Rule(
        "load-balancer-source-ranges",
        "A LoadBalancer Service restricts its callers with loadBalancerSourceRanges.",
        "advisory",
        load_balancers_restrict_sources,
        kubernetes=True,
    ),
    Rule(
        "gpu-pools-scale-to-zero",
        "GPU node pools autoscale from zero, so no GPU is paid for while nothing trains.",
        "advisory",
        gpu_pools_scale_to_zero,
        kubernetes=False,
    ),
)

STACK_RULES: Final[tuple[StackRule, ...]] = (
    StackRule(
        "network-policy-selects-every-pod",
        "Every pod is isolated for ingress and egress by a NetworkPolicy of its namespace.",
        "mandatory",
        pods_are_selected_by_network_policies,
    ),
    StackRule(
        "servers-only-read-the-store",
        "Serving pods mount the model store read-only and their identity holds no role that writes a bucket.",
        "mandatory",
        servers_only_read_the_store,
    ),
)

RULES_BY_NAME: Final[dict[str, Rule | StackRule]] = {
    **{rule.name: rule for rule in RULES},
    **{rule.name: rule for rule in STACK_RULES},
}


def violations(resource_type: str, props: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every resource rule's violations for one resource, keyed by rule name (rules without any left out)."""
    found = {rule.name: rule(resource_type, props) for rule in RULES}
    return {name: messages for name, messages in found.items() if messages}


def stack_violations(resources: Resources) -> dict[str, list[str]]:
    """Every stack rule's violations for a stack's resources, keyed by rule name (rules without any left out)."""
    found = {rule.name: rule(resources) for rule in STACK_RULES}
    return {name: messages for name, messages in found.items() if messages}
