"""Which input changes make a provider replace a resource instead of updating it, each with its source.

``pulumi preview`` marks a resource ``replace`` when its provider's diff says a changed input
cannot be updated in place. No provider plugin runs here, so the review (``tools/review.py``)
reads the same decision from this table: resource type -> the input paths (Pulumi's wire
names, camelCase, as the render writes them; a list is walked through, so
``nodeConfig.guestAccelerators.type`` is the type of every accelerator) whose change forces a
replacement, each read from the provider's own source:

- pulumi-gcp (10.2.0 in requirements.txt) is bridged from Terraform's Google provider, whose
  schema marks such fields ``ForceNew: true``. Read in hashicorp/terraform-provider-google at
  e03b762 (2026-08-21); the Terraform field is named beside each Pulumi path where they differ.
- pulumi-azure-native (3.29.0) replaces on a change of any parameter in the resource's ARM path
  (provider/pkg/provider/diff.go, ``calculateDetailedDiff``: "All the parameters that are part of
  the resource path cause a replacement"), of a property the REST spec marks
  ``x-ms-mutability: [create, read]`` (``location`` on every tracked resource: ARM common-types
  ``TrackedResource``; the generated ManagedCluster schema in
  provider/pkg/gen/__snapshots__/gen_managedcluster_test.snap marks it willReplaceOnChanges), and
  of the properties its hand-kept ``forceNewMap`` lists (provider/pkg/gen/replacement.go).
- pulumi-kubernetes replaces on ``metadata.name``/``metadata.namespace`` of every object and
  the per-kind fields of ``forceNew`` in provider/pkg/provider/diff.go.
- pulumi-random and pulumi-tls are bridged from Terraform's random and tls providers, whose
  plugin-framework schemas give each such attribute a ``RequiresReplace`` plan modifier.

A renamed resource (its Pulumi name, type or parent, hence its URN) is replaced as well unless
it declares an alias to its old URN; the review reports that from the two renders, not here.

Not every in-place change is harmless, and the table says only what the provider decides:
GKE applies a new ``machineType`` to a node pool in place by re-creating its nodes (a rolling
update, terraform-provider-google since v5.10.0, "Do not replace GKE's NodePool resource on
machineType/diskType/diskSizeGb change"); AKS refuses some in-place changes the provider
attempts (``scaleSetPriority`` of an existing pool), which then fail at ``pulumi up``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

# --- sources -------------------------------------------------------------------------

_TPG: Final = "hashicorp/terraform-provider-google google/services/"
_GKE_CLUSTER: Final = _TPG + "container/resource_container_cluster.go: ForceNew"
_GKE_POOL: Final = _TPG + "container/resource_container_node_pool.go: ForceNew"
_GKE_NODE_CONFIG: Final = _TPG + "container/node_config.go (schemaNodeConfig): ForceNew"
_GCS_BUCKET: Final = _TPG + "storage/resource_storage_bucket.go: ForceNew"
_AR_REPOSITORY: Final = _TPG + "artifactregistry/resource_artifact_registry_repository.go: ForceNew"
_AR_IAM: Final = _TPG + "artifactregistry/iam_artifact_registry_repository.go: ForceNew"
_GCS_IAM: Final = _TPG + "storage/iam_storage_bucket.go: ForceNew"
_PROJECT_IAM: Final = _TPG + "resourcemanager/iam_project.go: ForceNew"
_SERVICE_ACCOUNT: Final = _TPG + "resourcemanager/resource_google_service_account.go: ForceNew"
_IAM_MEMBER: Final = "hashicorp/terraform-provider-google google/tpgiamresource/resource_iam_member.go: ForceNew"

_AZURE_PATH: Final = "pulumi/pulumi-azure-native provider/pkg/provider/diff.go: a parameter of the resource's ARM path"
_AZURE_LOCATION: Final = (
    "Azure REST API common-types TrackedResource.location, x-ms-mutability [read, create] "
    "(pulumi/pulumi-azure-native provider/pkg/gen/properties.go, forceNew)"
)
_AZURE_FORCE_NEW: Final = "pulumi/pulumi-azure-native provider/pkg/gen/replacement.go: forceNewMap"
_AZURE_NETWORK_PROFILE: Final = (
    "pulumi/pulumi-azure-native provider/pkg/gen/replacement.go: forceNewMap, the networkProfile "
    "fields AKS cannot change in place (pulumi/pulumi-azure-native#4771; releases before it "
    "replaced the cluster on any networkProfile change)"
)

_K8S: Final = "pulumi/pulumi-kubernetes provider/pkg/provider/diff.go: "
_RANDOM: Final = "hashicorp/terraform-provider-random internal/provider/resource_{}.go: RequiresReplace"
# RandomPassword is RandomString with its result secret: the same inputs, each of which replaces it.
_RANDOM_STRING_INPUTS: Final = (
    "keepers", "length", "special", "upper", "lower", "number", "numeric",
    "minNumeric", "minUpper", "minLower", "minSpecial", "overrideSpecial",
)  # fmt: skip
_TLS: Final = "hashicorp/terraform-provider-tls internal/provider/resource_{}.go: RequiresReplace"


@dataclass(frozen=True)
class Rule:
    """An input path whose change forces a replacement, and where the provider says so."""

    path: str
    source: str

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


def _rules(source: str, *paths: str) -> tuple[Rule, ...]:
    return tuple(Rule(path, source) for path in paths)


# node_config is one schema for a cluster's default pool and a node pool (node_config.go);
# the Terraform field, where its Pulumi name differs, is in the comment.
_NODE_CONFIG_FORCE_NEW: Final = (
    "guestAccelerators",  # guest_accelerator (its type, count, driver, partition and sharing)
    "localSsdCount",
    "ephemeralStorageLocalSsdConfig",
    "localNvmeSsdBlockConfig",
    "secondaryBootDisks",
    "metadata",
    "minCpuPlatform",
    "oauthScopes",
    "preemptible",
    "reservationAffinity",
    "spot",
    "serviceAccount",
    "shieldedInstanceConfig",
    "sandboxConfig",
    "bootDiskKmsKey",
    "nodeGroup",
    "advancedMachineFeatures",
    "soleTenantConfig",
    "hostMaintenancePolicy",
    "confidentialNodes.confidentialInstanceType",
    "enableConfidentialStorage",
    "localSsdEncryptionMode",
    "maxRunDuration",
    "flexStart",
)
_NODE_CONFIG: Final = tuple(f"nodeConfig.{path}" for path in _NODE_CONFIG_FORCE_NEW)

_AKS_NETWORK_PROFILE: Final = tuple(
    f"networkProfile.{field}"
    for field in (
        "serviceCidr",
        "serviceCidrs",
        "dnsServiceIP",
        "networkMode",
        "networkPlugin",
        "networkPluginMode",
        "podCidr",
        "networkDataplane",
        "networkPolicy",
        "outboundType",
    )
)

_LABEL_SELECTOR: Final = ("spec.selector",)  # matchLabels and matchExpressions, all of it

REPLACE_ON_CHANGE: Final[Mapping[str, tuple[Rule, ...]]] = {
    # --- GKE (pulumi-gcp) ---
    "gcp:container/cluster:Cluster": (
        *_rules(
            _GKE_CLUSTER,
            "name",
            "location",
            "project",
            "network",
            "subnetwork",
            "datapathProvider",  # Dataplane V2 (ADVANCED_DATAPATH) is chosen at creation
            "networkingMode",
            "clusterIpv4Cidr",
            "ipAllocationPolicy.clusterIpv4CidrBlock",
            "ipAllocationPolicy.servicesIpv4CidrBlock",
            "ipAllocationPolicy.clusterSecondaryRangeName",
            "ipAllocationPolicy.servicesSecondaryRangeName",
            "ipAllocationPolicy.podCidrOverprovisionConfig",
            "privateClusterConfig.masterIpv4CidrBlock",
            "privateClusterConfig.privateEndpointSubnetwork",
            "defaultMaxPodsPerNode",
            "initialNodeCount",
            "nodePools",  # node_pool: pools declared inline
            "description",
            "enableAutopilot",
            "enableTpu",
            "enableKubernetesAlpha",
            "confidentialNodes",
            "masterAuth.clientCertificateConfig",
        ),
        *_rules(_GKE_NODE_CONFIG, *_NODE_CONFIG),
    ),
    "gcp:container/nodePool:NodePool": (
        *_rules(
            _GKE_POOL,
            "project",
            "cluster",
            "location",
            "name",
            "namePrefix",
            "initialNodeCount",
            "maxPodsPerNode",
            "placementPolicy",
            "queuedProvisioning",
            "networkConfig.createPodRange",
            "networkConfig.podRange",
            "networkConfig.podIpv4CidrBlock",
            "networkConfig.additionalNodeNetworkConfigs",
            "networkConfig.additionalPodNetworkConfigs",
            "networkConfig.podCidrOverprovisionConfig",
            "networkConfig.subnetwork",
        ),
        *_rules(_GKE_NODE_CONFIG, *_NODE_CONFIG),
    ),
    "gcp:storage/bucket:Bucket": _rules(
        _GCS_BUCKET,
        "name",
        "location",
        "project",
        "enableObjectRetention",
        "customPlacementConfig.dataLocations",
        "hierarchicalNamespace",
    ),
    "gcp:artifactregistry/repository:Repository": _rules(
        _AR_REPOSITORY,
        "repositoryId",
        "location",
        "format",
        "project",
        "mode",
        "kmsKeyName",
        "remoteRepositoryConfig",
        "mavenConfig.allowSnapshotOverwrites",
        "mavenConfig.versionPolicy",
    ),
    "gcp:serviceaccount/account:Account": _rules(_SERVICE_ACCOUNT, "accountId", "project"),
    "gcp:projects/iAMMember:IAMMember": (
        *_rules(_PROJECT_IAM, "project"),
        *_rules(_IAM_MEMBER, "role", "member", "condition"),
    ),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": (
        *_rules(_AR_IAM, "project", "location", "repository"),
        *_rules(_IAM_MEMBER, "role", "member", "condition"),
    ),
    "gcp:storage/bucketIAMMember:BucketIAMMember": (
        *_rules(_GCS_IAM, "bucket"),
        *_rules(_IAM_MEMBER, "role", "member", "condition"),
    ),
    # --- AKS (pulumi-azure-native) ---
    "azure-native:resources:ResourceGroup": (
        *_rules(_AZURE_PATH, "resourceGroupName"),
        *_rules(_AZURE_FORCE_NEW, "location"),
    ),
    "azure-native:containerservice:ManagedCluster": (
        *_rules(_AZURE_PATH, "resourceGroupName", "resourceName"),
        *_rules(_AZURE_LOCATION, "location"),
        *_rules(
            _AZURE_FORCE_NEW,
            "dnsPrefix",
            "diskEncryptionSetID",
            "fqdnSubdomain",
            "linuxProfile",
            "nodeResourceGroup",
            "windowsProfile",
        ),
        *_rules(_AZURE_NETWORK_PROFILE, *_AKS_NETWORK_PROFILE),
    ),
    "azure-native:containerservice:AgentPool": (
        *_rules(_AZURE_PATH, "resourceGroupName", "resourceName", "agentPoolName"),
        *_rules(_AZURE_FORCE_NEW, "vmSize", "gpuInstanceProfile", "networkProfile.nodePublicIPTags"),
    ),
    "azure-native:containerregistry:Registry": (
        *_rules(_AZURE_PATH, "resourceGroupName", "registryName"),
        *_rules(_AZURE_LOCATION, "location"),
    ),
    "azure-native:authorization:RoleAssignment": (
        *_rules(_AZURE_PATH, "scope", "roleAssignmentName"),
        *_rules(_AZURE_FORCE_NEW, "principalId"),
    ),
    "azure-native:monitor:AzureMonitorWorkspace": (
        *_rules(_AZURE_PATH, "resourceGroupName", "azureMonitorWorkspaceName"),
        *_rules(_AZURE_LOCATION, "location"),
    ),
    "azure-native:monitor:DataCollectionEndpoint": (
        *_rules(_AZURE_PATH, "resourceGroupName", "dataCollectionEndpointName"),
        *_rules(_AZURE_LOCATION, "location"),
    ),
    "azure-native:monitor:DataCollectionRule": (
        *_rules(_AZURE_PATH, "resourceGroupName", "dataCollectionRuleName"),
        *_rules(_AZURE_LOCATION, "location"),
    ),
    "azure-native:monitor:DataCollectionRuleAssociation": _rules(_AZURE_PATH, "resourceUri", "associationName"),
    # --- Kubernetes (pulumi-kubernetes), beyond metadata.name and namespace (KUBERNETES_ANY) ---
    "kubernetes:batch/v1:Job": _rules(
        _K8S + "job", "spec.completions", "spec.parallelism", "spec.template", *_LABEL_SELECTOR
    ),
    "kubernetes:apps/v1:Deployment": _rules(_K8S + "deployment", *_LABEL_SELECTOR),
    "kubernetes:apps/v1:StatefulSet": _rules(
        _K8S + "statefulSet",
        "spec.podManagementPolicy",
        "spec.revisionHistoryLimit",
        "spec.serviceName",
        "spec.volumeClaimTemplates",
        *_LABEL_SELECTOR,
    ),
    # The provider keys DaemonSet as "Daemonset", which no object's kind matches: its selector is
    # immutable in the API instead, so a change fails at `pulumi up` rather than replacing it.
    "kubernetes:core/v1:ConfigMap": _rules(_K8S + "core ConfigMap", "data", "binaryData"),
    "kubernetes:core/v1:Secret": _rules(_K8S + "core Secret", "type", "stringData", "data"),
    "kubernetes:core/v1:Service": _rules(_K8S + "core Service", "spec.clusterIP"),
    "kubernetes:core/v1:PersistentVolumeClaim": _rules(_K8S + "core PersistentVolumeClaim", "spec"),
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": _rules(_K8S + "roleBinding", "roleRef"),
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": _rules(_K8S + "roleBinding", "roleRef"),
    "kubernetes:storage.k8s.io/v1:StorageClass": _rules(_K8S + "StorageClass", "parameters", "provisioner"),
    # --- random and tls (bridged from Terraform) ---
    "random:index/randomPassword:RandomPassword": _rules(_RANDOM.format("password"), *_RANDOM_STRING_INPUTS),
    "random:index/randomString:RandomString": _rules(_RANDOM.format("string"), *_RANDOM_STRING_INPUTS),
    "tls:index/privateKey:PrivateKey": _rules(_TLS.format("private_key"), "algorithm", "rsaBits", "ecdsaCurve"),
    "tls:index/selfSignedCert:SelfSignedCert": _rules(
        _TLS.format("self_signed_cert"),
        "privateKeyPem",
        "validityPeriodHours",
        "allowedUses",
        "dnsNames",
        "ipAddresses",
        "uris",
        "isCaCertificate",
        "maxPathLength",
        "setSubjectKeyId",
        "setAuthorityKeyId",
        "subject",
    ),
    "tls:index/locallySignedCert:LocallySignedCert": _rules(
        _TLS.format("locally_signed_cert"),
        "caCertPem",
        "caPrivateKeyPem",
        "certRequestPem",
        "validityPeriodHours",
        "allowedUses",
        "isCaCertificate",
        "maxPathLength",
        "setSubjectKeyId",
    ),
    "tls:index/certRequest:CertRequest": _rules(
        _TLS.format("cert_request"), "privateKeyPem", "dnsNames", "ipAddresses", "uris", "subject"
    ),
}

# Every Kubernetes object: pulumi-kubernetes' metadataForceNewProperties. An object the program
# does not name is auto-named from its Pulumi name, which the URN already covers.
KUBERNETES_ANY: Final = _rules(_K8S + "metadataForceNewProperties", "metadata.name", "metadata.namespace")


def rules_for(type_: str) -> tuple[Rule, ...]:
    """The replacement rules of a resource type (none: every input change is an update)."""
    if type_.startswith("kubernetes:"):
        return (*KUBERNETES_ANY, *REPLACE_ON_CHANGE.get(type_, ()))
    return REPLACE_ON_CHANGE.get(type_, ())


# --- comparing inputs ------------------------------------------------------------------------


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


UNSET: Final = _Unset()

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Change:
    """One leaf of the inputs that differs: its path (list indices included), old and new value."""

    path: Path
    old: Any
    new: Any

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p for p in self.path if isinstance(p, str))

    @property
    def where(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text


def changes(old: Any, new: Any, path: Path = ()) -> Iterator[Change]:
    """Every leaf that differs between two input trees: maps key by key, lists of one length item by item."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from changes(old.get(key, UNSET), new.get(key, UNSET), (*path, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from changes(a, b, (*path, index))
    elif old != new:
        yield Change(path, old, new)


def values_at(value: Any, keys: Sequence[str]) -> list[Any]:
    """The values at ``keys``, through every list on the way; empty where the path is not set."""
    if isinstance(value, list) and keys:
        return [found for item in value for found in values_at(item, keys)]
    if not keys:
        return [value]
    if isinstance(value, dict) and keys[0] in value:
        return values_at(value[keys[0]], keys[1:])
    return []


def _text(value: Any) -> str:
    if value is UNSET:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def show(value: Any, limit: int = 80, start: int = 0) -> str:
    """A value as one short line: JSON for structures, the text itself for a string; a long one is cut
    to ``limit`` characters from ``start`` (where two values begin to differ)."""
    text = _text(value)
    if len(text) <= limit:
        return text
    start = max(0, min(start, len(text) - limit))
    cut = text[start : start + limit]
    return ("…" if start else "") + cut + ("…" if start + limit < len(text) else "")


def show_change(change: Change, limit: int = 80) -> str:
    """``old -> new``, two long values shown from a little before where they begin to differ."""
    old, new = _text(change.old), _text(change.new)
    start = 0
    if max(len(old), len(new)) > limit:
        common = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
        start = max(0, common - 20)
    return f"{show(change.old, limit, start)} -> {show(change.new, limit, start)}"


SHOWN: Final = 3  # changed inputs named per replacement; the diff has the rest


@dataclass(frozen=True)
class Forced:
    """A replacement the provider would plan: the rule and the changed inputs that trip it."""

    rule: Rule
    changed: tuple[Change, ...]

    def describe(self) -> str:
        shown = "; ".join(f"{c.where} changed: {show_change(c)}" for c in self.changed[:SHOWN])
        more = f"; and {len(self.changed) - SHOWN} more" if len(self.changed) > SHOWN else ""
        return shown + more


def under(change: Change, rule: Rule) -> bool:
    """Whether a changed leaf lies at or below the rule's path, or holds it (a list or map that
    changed as a whole)."""
    keys, rule_keys = change.keys, rule.keys
    return keys[: len(rule_keys)] == rule_keys or rule_keys[: len(keys)] == keys


def forced(type_: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Forced]:
    """The rules of ``type_`` that a change from ``old`` to ``new`` inputs trips, in table order."""
    found = []
    diff = list(changes(dict(old), dict(new)))
    if not diff:
        return []
    for rule in rules_for(type_):
        if values_at(old, rule.keys) == values_at(new, rule.keys):
            continue
        changed = tuple(c for c in diff if under(c, rule))
        if changed:
            found.append(Forced(rule, changed))
    return found
