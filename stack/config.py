"""The stack's configuration: read once, validated whole, returned typed and frozen.

This is the only module that reads ``pulumi.Config``. Defaults live in
``Pulumi.yaml`` alone (the CLI applies them, as does the test harness), so a
key that arrives unset means the program was run without its project file.

Every problem is collected and reported together, each naming the key, the bad
value and what is allowed, before any resource exists. A secret value is never
echoed in a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, TypeVar, cast

import pulumi
import yaml
from pulumi.runtime.config import CONFIG, get_config, is_config_secret

from mlapp.gate import Gate
from mlstack import autoscaling, catalogue, monitoring, rules, specs, validate
from mlstack.clouds import CLOUDS, Cloud, azure, gcp, local
from mlstack.problems import NAMESPACE, Problem, config_key, format_problem, format_problems

# The project's root, where Pulumi.yaml lies and `pulumi up` runs: mlstack:trainerContext is relative to it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_SECRET_LENGTH = 12  # a basic-auth password a person cannot guess in a few tries
APP_NAME_MAX = 40  # object names append suffixes such as "-server" and a random one
# GCP project IDs: 6-30 characters, lower-case letters, digits and hyphens,
# starting with a letter and not ending with a hyphen.
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_GCP_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")

T = TypeVar("T")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; ``problems`` lists every one found, each as printed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.found = list(problems)
        self.problems = [format_problem(p) for p in self.found]
        super().__init__(format_problems("invalid stack configuration", self.found))


@dataclass(frozen=True)
class NodePoolConfig:
    """Pool sizes of a cloud target (a local cluster's nodes are the user's own)."""

    system_node_count: int
    gpu_min_nodes: int
    gpu_max_nodes: int
    gpu_spot: bool
    quota_check: bool  # read the cloud's quotas before creating anything


@dataclass(frozen=True)
class ImageConfig:
    """Each image prebuilt, or how to build it: the server from app/, the trainer from its own context."""

    trainer: str | None  # None: built from trainer_context
    server: str | None  # None: built from app/
    trainer_context: str  # relative to the project; read only when the trainer is built
    platform: (
        str | None
    )  # one of catalogue.IMAGE_PLATFORMS; None: the builder's own (the target's Cloud.image_platform)
    build_cache: bool
    trainer_build: catalogue.TrainerBuild  # the trainer's torch build, built or prebuilt

    @property
    def prebuilt(self) -> bool:
        """Both images prebuilt: nothing is built."""
        return self.trainer is not None and self.server is not None


@dataclass(frozen=True)
class LocalConfig:
    """An existing kind or minikube cluster (mlstack:cloud local)."""

    kube_context: str | None  # None: the kubeconfig's current context
    registry: str | None  # None: no registry, images must already be on the nodes
    metrics_namespace: str  # where the cluster's Prometheus runs: it alone may scrape the pods
    scrape_by: monitoring.ScrapeBy  # how that Prometheus finds the pods: annotations or the Operator's CRDs
    cloud: Literal["local"] = "local"


@dataclass(frozen=True)
class GcpConfig:
    """The GKE target (mlstack:cloud gcp)."""

    project: str
    region: str
    zone: str | None  # None: a regional cluster
    release_channel: str
    deletion_protection: bool
    bucket_force_destroy: bool
    system_machine_type: str
    gpu_machine_type: str
    gpu_type: str
    gpu_count: int
    gpu_driver_version: str
    pools: NodePoolConfig
    cloud: Literal["gcp"] = "gcp"

    @property
    def scrape_by(self) -> monitoring.ScrapeBy:
        """GKE's own collector, Managed Service for Prometheus."""
        return gcp.GKE_SCRAPE_BY

    @property
    def location(self) -> str:
        """Where the cluster lives: its zone, or its region for a regional cluster."""
        return self.zone or self.region


@dataclass(frozen=True)
class AzureConfig:
    """The AKS target (mlstack:cloud azure)."""

    location: str
    system_vm_size: str
    gpu_vm_size: str  # a size in mlstack.clouds.azure.AZURE_GPU_SIZES
    upgrade_channel: str
    spot_max_price: float  # -1: pay up to the on-demand price
    acr_sku: str
    acr_admin_user: bool
    pools: NodePoolConfig
    cloud: Literal["azure"] = "azure"

    @property
    def scrape_by(self) -> monitoring.ScrapeBy:
        """AKS's own collector, Azure Monitor managed Prometheus."""
        return azure.AKS_SCRAPE_BY


# The cluster target: exactly one cloud's settings, told apart by ``cloud``.
TargetConfig = LocalConfig | GcpConfig | AzureConfig


@dataclass(frozen=True)
class StackConfig:
    kubernetes_version: str | None  # a pinned minor; None: the cloud's default for a new cluster
    app: specs.App
    images: ImageConfig
    basic_auth_username: str
    basic_auth_password: pulumi.Output[str] | None  # None: generate one
    # The server's own certificate chain and key (both secret), or both None: the stack makes its own CA.
    tls_certificate: pulumi.Output[str] | None
    tls_private_key: pulumi.Output[str] | None
    model_store_size: str
    storage_class: str | None  # None: the target's choice
    training: specs.Training
    serving: specs.Serving
    target: TargetConfig


class _Reader:
    """Reads the stack's keys, recording problems instead of raising."""

    def __init__(self) -> None:
        self.cfg = pulumi.Config(NAMESPACE)
        self.problems: list[Problem] = []

    def key(self, name: str) -> str:
        return config_key(name)

    def fail(self, name: str, value: object, reason: str) -> None:
        self.problems.append(Problem(name, value, reason))

    def add(self, problems: Sequence[Problem]) -> bool:
        """Record ``problems`` (a rule's answer); True when there were none."""
        self.problems.extend(problems)
        return not problems

    def _missing(self, name: str) -> None:
        self.problems.append(
            Problem(
                name,
                None,
                "is not set; its default is declared in Pulumi.yaml, "
                "so run the program through the Pulumi CLI (or the test harness)",
                show_value=False,
            )
        )

    def string(self, name: str, check: Callable[[str], T], placeholder: T) -> T:
        raw = self.cfg.get(name)
        if raw is None:
            self._missing(name)
            return placeholder
        try:
            return check(raw)
        except ValueError as e:
            self.fail(name, raw, str(e))
            return placeholder

    def text(self, name: str) -> str:
        return self.string(name, str, "")

    def choice(self, name: str, allowed: Sequence[str]) -> str:
        raw = self.cfg.get(name)
        if raw is None:  # reported as missing, not also as a bad choice
            self._missing(name)
            return allowed[0]
        return raw if self.add(rules.one_of(name, raw, allowed)) else allowed[0]

    def whole(self, name: str) -> int | None:
        """An integer, any; None (reported) when unset or not an integer."""
        try:
            value = self.cfg.get_int(name)
        except pulumi.ConfigTypeError:
            self.fail(name, self.cfg.get(name), "must be an integer")
            return None
        if value is None:
            self._missing(name)
        return value

    def integer(self, name: str, low: int, high: int | None = None) -> int:
        value = self.whole(name)
        return value if value is not None and self.add(rules.in_range(name, value, low, high)) else low

    def boolean(self, name: str) -> bool:
        try:
            value = self.cfg.get_bool(name)
        except pulumi.ConfigTypeError:
            self.fail(name, self.cfg.get(name), "must be true or false")
            return False
        if value is None:
            self._missing(name)
            return False
        return value

    def strings(self, name: str, check: Callable[[str], str]) -> tuple[str, ...]:
        raw = self.cfg.get(name)
        if raw is None:
            self._missing(name)
            return ()
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.fail(name, raw, 'must be a list of strings, e.g. ["a", "b"]')
            return ()
        checked = []
        for index, value in enumerate(values):
            try:
                checked.append(check(value))
            except ValueError as e:
                self.fail(f"{name}[{index}]", value, str(e))
        return tuple(checked)

    def secret_is_set(self, name: str) -> bool:
        """Whether an optional secret holds a value (read raw: its value is never shown or logged)."""
        return bool(get_config(self.key(name)))

    def secret_text(self, name: str, check: Callable[[str], object] | None = None) -> pulumi.Output[str] | None:
        """An optional secret: None when empty; refuses a value stored in plain text, or one ``check``
        refuses (a ValueError whose message must not quote the value)."""
        raw = get_config(self.key(name))
        if raw is None:
            self._missing(name)
            return None
        if raw == "":
            return None
        if not is_config_secret(self.key(name)):
            reason = (
                f"is stored in plain text in the stack file; set it with `pulumi config set --secret {name} <value>` "
                "(the value is not shown here)"
            )
            self.problems.append(Problem(name, None, reason, show_value=False))
            return None
        if len(raw) < MIN_SECRET_LENGTH:
            reason = "must be at least 12 characters long (the value is not shown here)"
            self.problems.append(Problem(name, None, reason, show_value=False))
            return None
        if check is not None:
            try:
                check(raw)
            except ValueError as e:
                self.problems.append(Problem(name, None, f"{e} (the value is not shown here)", show_value=False))
                return None
        return pulumi.Output.secret(raw)

    def quantity(self, name: str, *, memory: bool = False) -> str:
        """A Kubernetes quantity above zero; ``memory``: a size in bytes (validate.memory_quantity)."""
        value = self.text(name)
        if value:
            self.add(rules.parsed(name, value, validate.memory_quantity if memory else validate.positive_quantity))
        return value


def _username(value: str) -> str:
    # A conservative alphabet: the name is pasted into shell commands (the curl output).
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", value):
        raise ValueError("must be 1 to 64 characters of letters, digits and . _ @ - (starting with a letter or digit)")
    return value


def _label(value: str) -> str:
    if not value.strip() or "\n" in value or "\r" in value:
        raise ValueError("must be a non-empty label on one line")
    return value


def _optional(check: Callable[[str], str]) -> Callable[[str], str | None]:
    def wrapped(value: str) -> str | None:
        return check(value) if value else None

    return wrapped


def _context(value: str) -> str:
    if value != value.strip() or not value.isprintable():
        raise ValueError("must be a kubeconfig context name without surrounding spaces")
    return value


def declared_keys(project: Path = PROJECT_ROOT) -> list[str]:
    """The keys Pulumi.yaml declares (without the namespace): the only ones the program reads."""
    with (project / "Pulumi.yaml").open(encoding="utf-8") as f:
        return list((yaml.safe_load(f) or {}).get("config") or {})


def set_keys() -> list[str]:
    """Every ``mlstack:`` key the stack sets, as the CLI passed them (Pulumi.yaml's defaults included)."""
    prefix = f"{NAMESPACE}:"
    return [key.removeprefix(prefix) for key in CONFIG.get() if key.startswith(prefix)]


def load() -> StackConfig:
    """Read and validate the whole stack configuration, or raise ConfigError."""
    r = _Reader()
    r.add(rules.unknown_keys(set_keys(), declared_keys()))

    cloud = CLOUDS[r.choice("cloud", tuple(CLOUDS))]
    kubernetes_version = r.string("kubernetesVersion", _optional(validate.kubernetes_version), None)
    app = _app(r)
    username = r.string("basicAuthUsername", _username, "")
    password = r.secret_text("basicAuthPassword")
    tls_certificate, tls_private_key = _own_certificate(r)
    store_size = r.quantity("modelStoreSize", memory=True)
    storage_class = r.string("storageClass", _optional(validate.dns1123_label), None)

    training = _training(r)
    serving = _serving(r)
    local_registry = r.string("localRegistry", _optional(validate.registry_address), None)
    images = _images(r, cloud, local_registry)
    # Another cloud's keys keep their defaults and are not judged: a local stack
    # must not fail because no GCP project is set.
    target: TargetConfig
    if not images.prebuilt:  # the built images' repositories are named after the app
        r.add(rules.image_repository_prefix(app.app_name))
    if cloud is gcp.CLOUD:
        r.add(gcp.artifact_repository_id(app.app_name))
        target = _gcp(r, training, _gpu_build(images.trainer_build))
    elif cloud is azure.CLOUD:
        target = _azure(r, training, _gpu_build(images.trainer_build))
    else:
        target = LocalConfig(
            kube_context=r.string("kubeContext", _optional(_context), None),
            registry=local_registry,
            metrics_namespace=_metrics_namespace(r, app.namespace),
            scrape_by=_local_scrape_by(r),
        )
        r.add(rules.train_nodes_target(training.nodes, gpu_pool=False, shared_store=False))

    r.add(
        rules.public_source_ranges(serving.allowed_source_ranges, external_load_balancer=cloud.external_load_balancer)
    )
    # A warning, not a refusal: the deploy succeeds, and a test of a shipped stack with the placeholder runs.
    ranges = serving.allowed_source_ranges
    for warning in rules.documentation_source_ranges(ranges, external_load_balancer=cloud.external_load_balancer):
        pulumi.log.warn(format_problem(warning))
    r.add(rules.image_platform(images.platform, cloud_gpu_pool=cloud.gpu_pool))
    _server_gpu(r, serving, training, target, images.platform)
    if storage_class is not None:
        r.add(cloud.storage_class(storage_class))
    if kubernetes_version is not None:
        extended = isinstance(target, GcpConfig) and target.release_channel == gcp.GKE_EXTENDED_CHANNEL
        r.add(rules.kubernetes_version(cloud, kubernetes_version, catalogue.today(), extended=extended))
    if not r.problems:  # judged on values that are each valid
        linger = monitoring.trainer_linger_seconds(target.scrape_by)
        gpu_from_zero = not isinstance(target, LocalConfig) and target.pools.gpu_min_nodes == 0
        r.add(rules.train_deadline(training.deadline_seconds, linger, gpu_from_zero=gpu_from_zero))
        _capacity(r, serving, training, target, cloud)
    if r.problems:
        raise ConfigError(r.problems)
    return StackConfig(
        kubernetes_version=kubernetes_version,
        app=app,
        images=images,
        basic_auth_username=username,
        basic_auth_password=password,
        tls_certificate=tls_certificate,
        tls_private_key=tls_private_key,
        model_store_size=store_size,
        storage_class=storage_class,
        training=training,
        serving=serving,
        target=target,
    )


def _app(r: _Reader) -> specs.App:
    before = len(r.problems)
    labels = r.strings("modelLabels", _label)
    if len(r.problems) == before:  # a list that could not be read is reported once, as it is
        r.add(rules.class_names(labels))
    namespace = r.string("namespace", validate.dns1123_label, "")
    name = r.string("appName", lambda v: validate.dns1123_label(v, APP_NAME_MAX), "")
    r.add(rules.app_namespace(namespace))
    if name:
        r.add(rules.app_name(name))
    return specs.App(
        namespace=namespace,
        app_name=name,
        model_name=r.string("modelName", validate.dns1123_label, ""),
        model_labels=labels,
        log_level=r.choice("logLevel", LOG_LEVELS),
    )


def _own_certificate(r: _Reader) -> tuple[pulumi.Output[str] | None, pulumi.Output[str] | None]:
    """The server certificate chain and key the user brings (both secret), or (None, None)."""
    certificate = r.secret_text("tlsCertificate", validate.pem_certificate_chain)
    private_key = r.secret_text("tlsPrivateKey", validate.pem_private_key)
    r.add(rules.own_certificate(r.secret_is_set("tlsCertificate"), r.secret_is_set("tlsPrivateKey")))
    if certificate is None or private_key is None:
        return None, None
    return certificate, private_key


def _metrics_namespace(r: _Reader, app_namespace: str) -> str:
    value = r.text("localMetricsNamespace")
    if value or r.cfg.get("localMetricsNamespace") == "":
        r.add(rules.metrics_namespace(value, app_namespace))
    return value


def _local_scrape_by(r: _Reader) -> monitoring.ScrapeBy:
    """mlstack:localMetricsDiscovery, as the ScrapeBy it names (a refused value: a placeholder, reported)."""
    raw = r.choice("localMetricsDiscovery", local.LOCAL_SCRAPE_BY)
    return next((s for s in local.LOCAL_SCRAPE_BY if s == raw), local.LOCAL_SCRAPE_BY[0])


def _images(r: _Reader, cloud: Cloud, local_registry: str | None) -> ImageConfig:
    trainer = r.string("trainerImage", _optional(validate.image_reference), None)
    server = r.string("serverImage", _optional(validate.image_reference), None)
    # Each image independently prebuilt or built: the trainer and the server share no source.
    context = r.text("trainerContext")
    r.add(rules.trainer_context(context, PROJECT_ROOT, trainer_image_set=bool(r.cfg.get("trainerImage"))))
    built = [name for name in ("trainer", "server") if r.cfg.get(f"{name}Image") == ""]
    if built and cloud is local.CLOUD and local_registry is None and r.cfg.get("localRegistry") == "":
        keys = " and ".join(r.key(f"{name}Image") for name in built)
        images, prebuilt = (
            ("the trainer and server images are built and need", "prebuilt images")
            if len(built) > 1
            else (f"the {built[0]} image is built and needs", "a prebuilt image")
        )
        r.fail(
            "localRegistry",
            "",
            f"{images} a registry to push to: set {r.key('localRegistry')} (kind's local "
            f"registry is localhost:5001), or set {keys} to {prebuilt}",
        )
    return ImageConfig(
        trainer=trainer,
        server=server,
        trainer_context=context or specs.DIGITS_CONTEXT,
        platform=_image_platform(r, cloud),
        build_cache=r.boolean("imageBuildCache"),
        trainer_build=_trainer_build(r, gpu=cloud.gpu_pool),
    )


def _image_platform(r: _Reader, cloud: Cloud) -> str | None:
    """mlstack:imagePlatform, or when empty the target's: the builder's own locally, else amd64 (a cloud's)."""
    raw = r.text("imagePlatform")
    if raw == "":
        return cloud.image_platform
    return raw if r.add(rules.one_of("imagePlatform", raw, catalogue.IMAGE_PLATFORMS)) else catalogue.IMAGE_PLATFORMS[0]


def _trainer_build(r: _Reader, *, gpu: bool) -> catalogue.TrainerBuild:
    """mlstack:trainerCuda, or when empty the target's: CUDA 12.6 where it trains on a GPU, else CPU-only."""
    raw = r.text("trainerCuda")
    if raw == "" or not r.add(rules.trainer_build(raw, gpu)):
        return catalogue.default_trainer_build(gpu)  # a refused value: a placeholder, the config fails anyway
    return catalogue.TRAINER_BUILDS[raw]


def _gpu_build(build: catalogue.TrainerBuild) -> catalogue.TrainerCuda:
    """The CUDA build a GPU pool's rules judge; the CPU-only build is refused on a GPU target
    (rules.trainer_build), and the default stands in for it so the pool is still judged."""
    if isinstance(build, catalogue.TrainerCuda):
        return build
    return catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA]


def _training(r: _Reader) -> specs.Training:
    deadline = r.integer("trainDeadlineSeconds", rules.MIN_TRAINING_SECONDS)
    timeout = r.text("trainTimeout")
    if timeout:
        r.add(rules.train_timeout(timeout, deadline))
    command = r.strings("trainerCommand", str)
    r.add(rules.trainer_command(command))
    return specs.Training(
        epochs=r.integer("trainEpochs", 1, 1000),
        batch_size=r.integer("trainBatchSize", 1, 65536),
        learning_rate=r.string("trainLearningRate", lambda v: validate.unit_interval(v, open_low=True), 0.0),
        seed=r.integer("trainSeed", 0, 2**31 - 1),
        gate=_gate(r),
        backoff_limit=r.integer("trainBackoffLimit", 0, 20),
        deadline_seconds=deadline,
        timeout=timeout,
        cpu=r.quantity("trainerCpu"),
        memory=r.quantity("trainerMemory", memory=True),
        gpus=r.integer("trainerGpus", 1, 16),
        nodes=r.integer("trainNodes", 1, 100),
        command=command,
    )


# What stands in for a gate the config refused (the configuration fails anyway).
_PLACEHOLDER_GATE = Gate(*rules.ACCURACY_GATE, threshold=0.0)


def _gate(r: _Reader) -> Gate:
    """mlstack:gateMetric, gateDirection and gateThreshold (or minAccuracy), judged as the publisher judges."""
    before = len(r.problems)
    min_accuracy = r.string("minAccuracy", validate.unit_interval, 0.0)
    metric, direction, threshold = r.text("gateMetric"), r.text("gateDirection"), r.text("gateThreshold")
    if len(r.problems) != before:  # a key missing, or minAccuracy refused: reported already
        return _PLACEHOLDER_GATE
    judged, problems = rules.gate(metric, direction, threshold, min_accuracy)
    r.add(problems)
    return judged or _PLACEHOLDER_GATE


def _serving(r: _Reader) -> specs.Serving:
    replicas = r.integer("replicas", 1, 100)
    max_replicas = r.integer("maxReplicas", 1, 1000)
    r.add(rules.replicas(replicas, max_replicas))
    cpu_request, cpu_limit = _request_and_limit(r, "serverCpuRequest", "serverCpuLimit")
    memory_request, memory_limit = _request_and_limit(r, "serverMemoryRequest", "serverMemoryLimit", memory=True)
    return specs.Serving(
        replicas=replicas,
        max_replicas=max_replicas,
        scale_on=cast("autoscaling.ScaleOn", r.choice("serverScaleOn", autoscaling.SCALE_ON)),
        target_in_flight=r.string("serverTargetInFlight", validate.requests_in_flight, 1.0),
        target_cpu_utilization=r.integer("targetCpuUtilization", 1, 100),
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        service_port=r.integer("servicePort", 1, 65535),
        allowed_source_ranges=r.strings("allowedSourceRanges", validate.cidr),
        gpu=r.boolean("serverGpu"),
    )


def _request_and_limit(r: _Reader, request_key: str, limit_key: str, *, memory: bool = False) -> tuple[str, str]:
    request, limit = r.text(request_key), r.text(limit_key)
    if request and limit:  # an empty one is already reported as missing
        r.add(rules.request_and_limit(request_key, request, limit_key, limit, memory=memory))
    return request, limit


def _node_pools(r: _Reader) -> NodePoolConfig:
    # The range of each is the rule's (rules.gpu_pool_size), not the reader's; a value
    # that could not be read is reported once, as it is.
    gpu_min, gpu_max = r.whole("gpuMinNodes"), r.whole("gpuMaxNodes")
    if gpu_min is None or gpu_max is None or not r.add(rules.gpu_pool_size(gpu_min, gpu_max)):
        gpu_min, gpu_max = 0, 1  # placeholders: the configuration is refused anyway
    return NodePoolConfig(
        system_node_count=r.integer("systemNodeCount", 1, 100),
        gpu_min_nodes=gpu_min,
        gpu_max_nodes=gpu_max,
        gpu_spot=r.boolean("gpuSpot"),
        quota_check=r.boolean("quotaCheck"),
    )


def _gcp_project(value: str) -> str:
    if not value:
        raise ValueError("must be set to the GCP project to deploy into (`pulumi config set gcpProject ID`)")
    if not _GCP_PROJECT.match(value):
        raise ValueError(
            "must be a GCP project ID: 6-30 lower-case letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen (e.g. my-ml-project)"
        )
    return value


def _gcp_region(value: str) -> str:
    if not _GCP_REGION.match(value):
        raise ValueError("must be a GCP region such as us-central1 or europe-west4")
    return value


def _gcp_machine_type(value: str) -> str:
    if not _GCP_MACHINE_TYPE.match(value):
        raise ValueError("must be a Compute Engine machine type such as e2-standard-4 or n1-standard-4")
    return value


def _gcp(r: _Reader, training: specs.Training, trainer_cuda: catalogue.TrainerCuda) -> GcpConfig:
    region = r.string("gcpRegion", _gcp_region, "")
    zone = r.string("gcpZone", _optional(str), None)
    if region and r.add(gcp.gcp_region(region)):
        r.add(gcp.gcp_zone(zone, region))
    gpu_machine_type = r.string("gkeGpuMachineType", _gcp_machine_type, "")
    gpu_type = r.text("gkeGpuType")
    gpu_count = r.integer("gkeGpuCount", 1, 16)
    driver_version = r.choice("gkeGpuDriverVersion", gcp.GCP_GPU_DRIVER_VERSIONS)
    pools = _node_pools(r)
    if gpu_machine_type and r.add(
        gcp.gke_gpu_pool(
            gpu_type,
            gpu_machine_type,
            gpu_count,
            driver_version=driver_version,
            trainer_gpus=training.gpus,
            build=trainer_cuda,
        )
    ):
        # Judged once the pool itself exists on Compute Engine: where it can be, and how it is sold.
        r.add(gcp.gke_gpu_machine_limits(gpu_type, gpu_machine_type, gpu_count, zone))
        r.add(gcp.gke_on_demand(gpu_machine_type, pools.gpu_spot))
        if region and not gcp.gcp_region(region) and not gcp.gcp_zone(zone, region):
            r.add(gcp.gke_gpu_where(gpu_type, gpu_machine_type, region, zone))
    r.add(
        rules.train_nodes(
            nodes=training.nodes,
            trainer_gpus=training.gpus,
            gpus_per_node=gpu_count,
            max_nodes=pools.gpu_max_nodes,
            gpu_model=gpu_type,
            batch_size=training.batch_size,
        )
    )
    return GcpConfig(
        project=r.string("gcpProject", _gcp_project, ""),
        region=region,
        zone=zone,
        release_channel=r.choice("gkeReleaseChannel", gcp.GKE_RELEASE_CHANNELS),
        deletion_protection=r.boolean("gkeDeletionProtection"),
        bucket_force_destroy=r.boolean("gkeModelBucketForceDestroy"),
        system_machine_type=_system_machine(r, "gkeSystemMachineType", _gcp_machine_type, gcp.arm_system_pool),
        gpu_machine_type=gpu_machine_type,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        gpu_driver_version=driver_version,
        pools=pools,
    )


def _azure(r: _Reader, training: specs.Training, trainer_cuda: catalogue.TrainerCuda) -> AzureConfig:
    gpu_vm_size = r.text("aksGpuVmSize")
    if gpu_vm_size:
        r.add(azure.aks_gpu_pool(gpu_vm_size, training.gpus, trainer_cuda))
    pools = _node_pools(r)
    size = azure.AZURE_GPU_SIZES.get(gpu_vm_size)
    if size is not None:  # an unknown size is reported by aks_gpu_pool
        r.add(
            rules.train_nodes(
                nodes=training.nodes,
                trainer_gpus=training.gpus,
                gpus_per_node=size.gpus,
                max_nodes=pools.gpu_max_nodes,
                gpu_model=size.gpu_model,
                batch_size=training.batch_size,
            )
        )
    location = r.string("azureLocation", azure.azure_location, "")
    spot_max_price = r.string("aksSpotMaxPrice", _spot_max_price, -1.0)
    r.add(azure.spot_max_price_market(spot_max_price, location, gpu_vm_size, spot=pools.gpu_spot))
    return AzureConfig(
        location=location,
        system_vm_size=_system_machine(r, "aksSystemVmSize", azure.azure_vm_size, azure.arm_system_pool),
        gpu_vm_size=gpu_vm_size,
        upgrade_channel=r.choice("aksUpgradeChannel", azure.AKS_UPGRADE_CHANNELS),
        spot_max_price=spot_max_price,
        acr_sku=r.choice("acrSku", azure.ACR_SKUS),
        acr_admin_user=r.boolean("acrAdminUser"),
        pools=pools,
    )


def _system_machine(r: _Reader, key: str, check: Callable[[str], str], x86_64: Callable[[str], list[Problem]]) -> str:
    """The system pool's machine: a valid name (``check``), and x86-64 (``x86_64``: the servers' images are)."""
    machine = r.string(key, check, "")
    if machine:
        r.add(x86_64(machine))
    return machine


def _spot_max_price(value: str) -> float:
    try:
        price = Decimal(value)
    except InvalidOperation as e:
        raise ValueError("must be -1 or a price in US dollars per hour, such as 0.25") from e
    problems = azure.spot_max_price(price)
    if problems:
        raise ValueError(problems[0].reason)
    return float(price)


def _server_gpu(
    r: _Reader, serving: specs.Serving, training: specs.Training, target: TargetConfig, platform: str | None
) -> None:
    """Servers on the GPU pool (mlstack:serverGpu): a pool there is, whose driver and GPU run the server's CUDA
    build, big enough for the servers at their ceiling beside a retraining Job, from an x86-64 image."""
    if not serving.gpu:
        return
    if isinstance(target, LocalConfig):
        r.add(rules.server_gpu_target(True, gpu_pool=False))
        return
    r.add(rules.server_gpu_image_platform(platform))
    r.add(rules.server_gpu_memory(serving.memory_limit))
    if isinstance(target, GcpConfig):
        r.add(gcp.server_gpu_gke(target.gpu_type, target.gpu_driver_version))
        gpus_per_node, gpu_model = target.gpu_count, target.gpu_type
    else:
        r.add(azure.server_gpu_aks(target.gpu_vm_size))
        size = azure.AZURE_GPU_SIZES.get(target.gpu_vm_size)
        if size is None:  # reported by aks_gpu_pool
            return
        gpus_per_node, gpu_model = size.gpus, size.gpu_model
    r.add(
        rules.server_gpu_pool(
            max_replicas=serving.max_replicas,
            gpus_per_node=gpus_per_node,
            max_nodes=target.pools.gpu_max_nodes,
            train_nodes=training.nodes,
            trainer_gpus=training.gpus,
            gpu_model=gpu_model,
        )
    )


def _capacity(r: _Reader, serving: specs.Serving, training: specs.Training, target: TargetConfig, cloud: Cloud) -> None:
    """Refuse a system or GPU machine size whose nodes cannot hold what is scheduled there."""
    if isinstance(target, GcpConfig):
        sizes = (target.system_machine_type, target.gpu_machine_type)
    elif isinstance(target, AzureConfig):
        sizes = (target.system_vm_size, target.gpu_vm_size)
    else:
        return  # a local cluster: its nodes are the user's own
    if cloud.nodes is None:
        return
    problems, unchecked = rules.node_capacity(
        cloud.nodes,
        *sizes,
        system_nodes=target.pools.system_node_count,
        serving=serving,
        training=training,
        gpu_nodes=target.pools.gpu_max_nodes,
    )
    r.add(problems)
    for warning in unchecked:
        pulumi.log.warn(format_problem(warning))
