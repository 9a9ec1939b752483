"""Every rule that judges the configuration, written once.

Each rule returns the ``Problem``s it finds (empty: the values are sound).
``stack.config.load`` calls them on the stack's config before any resource
exists, and a component calls the same ones on its Args, so a rule has one
wording wherever it fires. Keys are config keys without the namespace.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from mlapp import contract
from mlapp.gate import Gate, GateError, check_metric_name
from mlstack import capacity, catalogue, specs, validate
from mlstack.catalogue import TRAINER_BUILDS, TRAINER_CPU, TRAINER_CUDA_BUILDS, TrainerCuda, runs_on
from mlstack.problems import Problem, config_key

if TYPE_CHECKING:  # the clouds' modules import this one: they are handed in, never imported
    from mlstack.clouds.cloud import Cloud, NodeFacts

MIN_CLASSES = 2  # a classifier tells at least two classes apart
# The trainer's command (mlstack:trainerCommand): it lands in the Job's pod template, whose whole object
# the API server stores in etcd, so its size is bounded; a command line holds a few dozen words.
MAX_COMMAND_ENTRIES: Final = 100
MAX_COMMAND_ENTRY_LENGTH: Final = 1024
# The gate that needs no gateThreshold: the digits example's, whose threshold is mlstack:minAccuracy.
ACCURACY_GATE: Final = ("accuracy", "maximize")
# The repository path components of an image reference (distribution/reference).
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def listed(values: Iterable[object]) -> str:
    """Values as a message lists them: "a, b, c"."""
    return ", ".join(str(v) for v in values)


# --- single values -------------------------------------------------------------------


def parsed(key: str, value: str, parser: Callable[[str], object]) -> list[Problem]:
    """A value one of ``mlstack.validate``'s (or the catalogue's) parsers accepts."""
    try:
        parser(value)
    except ValueError as e:
        return [Problem(key, value, str(e))]
    return []


def one_of(key: str, value: object, allowed: Sequence[object]) -> list[Problem]:
    if value in allowed:
        return []
    return [Problem(key, value, f"must be one of {listed(allowed)}")]


def in_range(key: str, value: int, low: int, high: int | None = None) -> list[Problem]:
    try:
        validate.int_range(value, low, high)
    except ValueError as e:
        return [Problem(key, value, str(e))]
    return []


def image_repository_prefix(app_name: str) -> list[Problem]:
    """The app's name prefixes its image repositories (<appName>-trainer, <appName>-server)."""
    if _IMAGE_REPOSITORY.match(app_name):
        return []
    return [
        Problem(
            "appName",
            app_name,
            "names the image repositories (<appName>-trainer, <appName>-server); must be lower-case "
            "letters and digits, separated by single '.', '_' or '-'",
        )
    ]


# --- values judged together ----------------------------------------------------------


def class_names(labels: Sequence[str]) -> list[Problem]:
    """The class labels that replace the model's own (mlstack:modelLabels): none (the model's own are
    served), or at least two, none repeated."""
    if not labels:
        return []
    if len(labels) < MIN_CLASSES:
        return [Problem("modelLabels", list(labels), "must list at least two class labels")]
    if len(set(labels)) != len(labels):
        return [Problem("modelLabels", list(labels), "must not repeat a label")]
    return []


# --- the trainer and its gate ------------------------------------------------------------


def trainer_context(context: str, project: Path, *, trainer_image_set: bool) -> list[Problem]:
    """mlstack:trainerContext: a directory of the project holding a Dockerfile, and not beside a prebuilt trainer.

    ``context`` as configured ("" is the digits example, specs.DIGITS_CONTEXT, judged the same way).
    Relative, and inside the project: the build's context is a resource input, and an absolute path or
    one that climbs out would change with the checkout it is deployed from.
    """
    if trainer_image_set:
        if not context:
            return []
        reason = "must be empty when mlstack:trainerImage is set: a prebuilt trainer is not built; set one or the other"
        return [Problem("trainerContext", context, reason)]
    path = PurePosixPath(context or specs.DIGITS_CONTEXT)
    directory = project / path
    if path.is_absolute() or "\\" in context:
        reason = "must be a directory relative to the project, e.g. examples/digits"
    elif ".." in path.parts:
        reason = "must stay inside the project: no '..'"
    elif not directory.is_dir():
        reason = f"names no directory of the project ({directory} does not exist)"
    elif not (directory / "Dockerfile").is_file():
        reason = f"must hold a Dockerfile ({directory / 'Dockerfile'} does not exist): the trainer is built from it"
    else:
        return []
    return [Problem("trainerContext", context, reason)]


def trainer_command(command: Sequence[str]) -> list[Problem]:
    """mlstack:trainerCommand: empty (the image's ENTRYPOINT/CMD), or a bounded list of non-empty words."""
    if len(command) > MAX_COMMAND_ENTRIES:
        return [Problem("trainerCommand", f"{len(command)} entries", f"must hold at most {MAX_COMMAND_ENTRIES}")]
    problems = []
    for index, word in enumerate(command):
        if not word:
            problems.append(Problem(f"trainerCommand[{index}]", word, "must not be empty"))
        elif len(word) > MAX_COMMAND_ENTRY_LENGTH:
            problems.append(
                Problem(
                    f"trainerCommand[{index}]",
                    word[:40] + "...",
                    f"must be at most {MAX_COMMAND_ENTRY_LENGTH} characters",
                )
            )
        elif "\0" in word:  # execve(2) takes NUL-terminated strings: no argument can carry one
            problems.append(Problem(f"trainerCommand[{index}]", word, "must not contain a NUL character"))
    return problems


def gate(metric: str, direction: str, threshold: str, min_accuracy: float) -> tuple[Gate | None, list[Problem]]:
    """The stack's gate (mlstack:gateMetric, gateDirection, gateThreshold) and its problems.

    Judged by ``mlapp.gate``, the module the publisher judges with, so a metric's name has one rule and
    one wording. An empty gateThreshold is mlstack:minAccuracy for the accuracy gate (maximize), the
    digits example's, and refused for any other. The gate must survive its written form (``str``, how
    the publish Job's command carries it) unchanged, or the trainer and the publisher would be told two
    thresholds.
    """
    problems = one_of("gateDirection", direction, contract.GATE_DIRECTIONS)
    try:
        check_metric_name(metric)
    except GateError as e:
        problems.append(Problem("gateMetric", metric, str(e)))
    if problems:
        return None, problems
    key, value = ("gateThreshold", threshold) if threshold else ("minAccuracy", repr(min_accuracy))
    if not threshold and (metric, direction) != ACCURACY_GATE:
        reason = (
            f"must be set for the gate on {metric} ({direction}): set gateThreshold; only the accuracy gate "
            "(maximize) takes mlstack:minAccuracy as its threshold"
        )
        return None, [Problem("gateThreshold", threshold, reason)]
    try:
        # The reader the trainer and the publisher share: the three variables as the Job sets them.
        judged = Gate.from_env(
            {
                contract.ENV_GATE_METRIC: metric,
                contract.ENV_GATE_DIRECTION: direction,
                contract.ENV_GATE_THRESHOLD: value,
            }
        )
    except GateError as e:
        return None, [Problem(key, value, str(e))]
    if judged is None:  # a metric was checked above: from_env always answers a gate here
        return None, [Problem("gateMetric", metric, "must be set")]
    problems = gate_written_form(judged, key, value)
    return (None, problems) if problems else (judged, [])


def gate_written_form(gate: Gate, key: str = "gateThreshold", value: object = None) -> list[Problem]:
    """The gate reads the same once written (``str``, as the publish Job's command carries it), so the trainer
    (told the threshold in full) and the publisher judge one threshold."""
    if Gate.parse(str(gate)) == gate:
        return []
    shown = gate.threshold if value is None else value
    return [Problem(key, shown, f"has more digits than the gate's written form keeps ({gate}): round it")]


def own_certificate(certificate_set: bool, private_key_set: bool) -> list[Problem]:
    """A certificate brought by the user comes with its key (mlstack:tlsCertificate, mlstack:tlsPrivateKey)."""
    if certificate_set == private_key_set:
        return []
    missing, given = ("tlsPrivateKey", "tlsCertificate") if certificate_set else ("tlsCertificate", "tlsPrivateKey")
    return [
        Problem(
            missing,
            None,
            f"must be set when mlstack:{given} is: your own certificate and its private key come as a pair "
            "(both with `pulumi config set --secret`); leave both empty and the stack makes its own CA and "
            "server certificate",
            show_value=False,
        )
    ]


def metrics_namespace(namespace: str, app_namespace: str) -> list[Problem]:
    """The namespace whose pods may scrape the app: a DNS-1123 label, and not the app's own namespace
    (every pod there, the internet-facing server included, would be let in)."""
    problems = parsed("localMetricsNamespace", namespace, validate.dns1123_label)
    if not problems and namespace == app_namespace:
        reason = (
            "must not be the app's own namespace (mlstack:namespace): every pod there would reach the metrics ports; "
            "name the namespace your Prometheus runs in"
        )
        problems.append(Problem("localMetricsNamespace", namespace, reason))
    return problems


def replicas(minimum: int, maximum: int) -> list[Problem]:
    if maximum >= minimum:
        return []
    return [Problem("maxReplicas", maximum, f"must be at least mlstack:replicas ({minimum})")]


def request_and_limit(
    request_key: str, request: str, limit_key: str, limit: str, *, memory: bool = False
) -> list[Problem]:
    """Both Kubernetes quantities above zero (``memory``: sizes in bytes), the limit at least the request."""
    check = validate.memory_quantity if memory else validate.positive_quantity
    problems = parsed(request_key, request, check)
    problems += parsed(limit_key, limit, check)
    if problems:
        return problems
    if validate.quantity(limit) < validate.quantity(request):
        return [Problem(limit_key, limit, f"must be at least mlstack:{request_key} ({request})")]
    return []


def train_timeout(timeout: str, deadline_seconds: int) -> list[Problem]:
    """`pulumi up` must wait at least as long as Kubernetes lets the Job run."""
    try:
        seconds = validate.duration_seconds(timeout)
    except ValueError as e:
        return [Problem("trainTimeout", timeout, str(e))]
    if seconds >= deadline_seconds:
        return []
    return [
        Problem(
            "trainTimeout",
            timeout,
            f"must be at least mlstack:trainDeadlineSeconds ({deadline_seconds}s), so that Kubernetes "
            "ends a stuck Job before `pulumi up` gives up waiting for it",
        )
    ]


# What a run needs beside the trainer's metrics linger, at the least: the smallest deadline the config allows.
MIN_TRAINING_SECONDS = 60


# A Job's activeDeadlineSeconds counts from the Job's start, the time its pods wait for a node included
# ("Once a Job reaches activeDeadlineSeconds, all of its running Pods are terminated",
# https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup). A GPU pool at
# zero first waits for a node: the cluster autoscaler holds GPU pods 30 s before scaling up (Azure/AKS#5573),
# and a GPU VM with its driver install took "as long as 8min+" (Azure/aks-engine#3507). Ten minutes are kept.
GPU_SCALE_UP_SECONDS: Final = 600


def train_deadline(deadline_seconds: int, linger_seconds: int, *, gpu_from_zero: bool = False) -> list[Problem]:
    """The Job's deadline holds the run and the time the trainer keeps its metrics up after its verdict
    (mlstack/monitoring.py): a deadline inside the linger would fail a Job that has published its model.
    ``gpu_from_zero``: the GPU pool starts with no node, and the wait for one counts too."""
    scale_up = GPU_SCALE_UP_SECONDS if gpu_from_zero else 0
    least = MIN_TRAINING_SECONDS + linger_seconds + scale_up
    if deadline_seconds >= least:
        return []
    reason = (
        f"must be at least {least}: {MIN_TRAINING_SECONDS}s to train and the {linger_seconds}s the trainer keeps "
        "its metrics up after its verdict, for the cluster's collector to scrape it"
    )
    if scale_up:
        reason += (
            f", plus {scale_up}s for a GPU node to come up from zero (gpuMinNodes is 0), which the Job's deadline "
            "counts too"
        )
    return [Problem("trainDeadlineSeconds", deadline_seconds, reason)]


def gpu_pool_size(min_nodes: int, max_nodes: int) -> list[Problem]:
    """An autoscaled GPU pool: from ``min_nodes`` (0 scales to zero) to ``max_nodes``."""
    problems = in_range("gpuMinNodes", min_nodes, 0, 100) + in_range("gpuMaxNodes", max_nodes, 1, 100)
    if not problems and max_nodes < min_nodes:
        problems.append(Problem("gpuMaxNodes", max_nodes, f"must be at least mlstack:gpuMinNodes ({min_nodes})"))
    return problems


def system_node_count(count: int) -> list[Problem]:
    return in_range("systemNodeCount", count, 1, 100)


def trainer_gpus_per_node(
    trainer_gpus: int, gpus_per_node: int, gpu_model: str, node_sizes: Mapping[str, int] | None = None
) -> list[Problem]:
    """A pod never spans nodes: the trainer asks for at most what one GPU node carries.

    ``node_sizes``: the cloud's node sizes with this GPU and the GPUs each carries,
    to name the ones that would hold the trainer.
    """
    if trainer_gpus <= gpus_per_node:
        return []
    larger = [n for n, gpus in sorted((node_sizes or {}).items(), key=lambda item: item[1]) if gpus >= trainer_gpus]
    alternative = f"; sizes with that many: {', '.join(larger)}" if larger else ""
    return [
        Problem(
            "trainerGpus",
            trainer_gpus,
            f"a node of the GPU pool carries {gpus_per_node} {gpu_model} GPU(s) and a pod cannot span nodes, "
            f"so the trainer can request at most {gpus_per_node}{alternative}",
        )
    ]


def train_nodes(  # noqa: PLR0913 - the Job's shape and the pool it must fit in, keyword-only
    *, nodes: int, trainer_gpus: int, gpus_per_node: int, max_nodes: int, gpu_model: str, batch_size: int
) -> list[Problem]:
    """A multi-node training Job fits in the GPU pool at its largest, and every rank gets examples.

    Each of the ``nodes`` pods requests ``trainer_gpus``, so a node holds
    ``gpus_per_node // trainer_gpus`` of them, and all must run at once: the ranks
    rendezvous before the first step.
    """
    if nodes == 1 or trainer_gpus > gpus_per_node:  # one pod; or trainer_gpus_per_node says why not
        return []
    problems = []
    per_node = gpus_per_node // trainer_gpus
    needed = -(-nodes // per_node)
    if needed > max_nodes:
        problems.append(
            Problem(
                "trainNodes",
                nodes,
                f"{nodes} training pods of mlstack:trainerGpus {trainer_gpus} must run at once, and a node of "
                f"the GPU pool carries {gpus_per_node} {gpu_model} GPU(s), so {per_node} pod(s) per node: they "
                f"need {needed} nodes but mlstack:gpuMaxNodes is {max_nodes}; raise mlstack:gpuMaxNodes to "
                f"{needed} or lower trainNodes to {max_nodes * per_node}",
            )
        )
    world = nodes * trainer_gpus
    if batch_size < world:
        problems.append(
            Problem(
                "trainBatchSize",
                batch_size,
                f"each batch is shared by the {world} ranks (mlstack:trainNodes {nodes} x mlstack:trainerGpus "
                f"{trainer_gpus}), so it must be at least {world}",
            )
        )
    return problems


def train_nodes_target(nodes: int, gpu_pool: bool, shared_store: bool) -> list[Problem]:
    """More than one training pod needs a GPU pool, and a model store that pods on different nodes share."""
    if nodes == 1:
        return []
    if not gpu_pool:
        return [
            Problem(
                "trainNodes",
                nodes,
                "more than one training pod runs on a GPU pool (mlstack:cloud azure or gcp); a local cluster "
                "trains in one pod, so set it to 1",
            )
        ]
    if not shared_store:
        return [
            Problem(
                "trainNodes",
                nodes,
                "more than one training pod needs a model store that pods on different nodes can all mount "
                "(ReadWriteMany or a CSI volume), and this target's is ReadWriteOnce; set it to 1",
            )
        ]
    return []


# --- the GPU pool and the trainer's CUDA build ----------------------------------------


def trainer_build(value: str, gpu: bool) -> list[Problem]:
    """mlstack:trainerCuda names a build (empty: the target's) that fits a target with (``gpu``) or without a GPU.

    The Job tells the trainer MLAPP_DEVICE=cuda exactly when its pod requests a GPU
    (components/workloads.py), and a trainer keeping the contract then exits 1 if CUDA cannot be
    used (docs/trainer-contract.md; the digits example does, as tests/examples/digits/test_cuda.py
    shows with a CPU-only torch): a CPU-only build on a GPU pool fails every run. Without a GPU it
    is told cpu, so a CUDA build there is never used and only adds gigabytes to the image.
    """
    if value == "":
        return []
    if value not in TRAINER_BUILDS:
        choices = listed(TRAINER_BUILDS)
        return [Problem("trainerCuda", value, f"must be one of {choices}, or empty for the target's own")]
    cuda = sorted(TRAINER_CUDA_BUILDS)
    if gpu and value == TRAINER_CPU.name:
        return [
            Problem(
                "trainerCuda",
                value,
                "is the CPU-only torch build, but this target trains on its GPU pool, where the trainer "
                f"exits 1 without CUDA; set it to {' or '.join(cuda)}, or leave it empty for "
                f"{catalogue.DEFAULT_TRAINER_CUDA}",
            )
        ]
    if not gpu and value != TRAINER_CPU.name:
        return [
            Problem(
                "trainerCuda",
                value,
                "is a CUDA build, but a local cluster has no GPU: the trainer trains on the CPU there, and "
                f"CUDA would only add gigabytes to its image; leave it empty (or set {TRAINER_CPU.name}) "
                "for the CPU-only build",
            )
        ]
    return []


def trainer_gpu(
    build: TrainerCuda, gpu_model: str, capability: tuple[int, int], key: str, value: object
) -> list[Problem]:
    """A GPU the trainer's build has no kernels for would fail at its first CUDA call."""
    if runs_on(build, capability):
        return []
    usable = [c for c, b in TRAINER_CUDA_BUILDS.items() if runs_on(b, capability)]
    alternative = f"; set mlstack:trainerCuda to {' or '.join(usable)}, or choose a newer GPU" if usable else ""
    return [
        Problem(
            key,
            value,
            f"{gpu_model} (compute capability {capability[0]}.{capability[1]}) is not supported by the "
            f"trainer's CUDA {build.cuda} build (mlstack:trainerCuda), which runs on compute capability "
            f"{', '.join(f'{a}.{b}' for a, b in build.architectures)}{alternative}",
        )
    ]


def trainer_driver(build: TrainerCuda, driver_branch: int | None, key: str, value: object, where: str) -> list[Problem]:
    """The node's NVIDIA driver must be new enough for the trainer's CUDA build."""
    if driver_branch is None or driver_branch >= build.min_driver_branch:
        return []
    return [
        Problem(
            key,
            value,
            f"{where} installs an R{driver_branch} NVIDIA driver, but the trainer's CUDA {build.cuda} build "
            f"(mlstack:trainerCuda) needs {build.min_driver} or newer",
        )
    ]


# --- the server on the GPU pool (mlstack:serverGpu) -------------------------------------
# The server's CUDA build (catalogue.SERVER_CUDA) against the GPU pool, as the trainer's build is judged above.


def _server_capabilities(build: catalogue.ServerCuda) -> str:
    return ", ".join(f"{a}.{b}" for a, b in sorted(build.architectures + build.exact_architectures))


def server_gpu_model(gpu_model: str, capability: tuple[int, int], key: str, value: object) -> list[Problem]:
    """A GPU the server's onnxruntime-gpu has no kernels for cannot serve on it."""
    build = catalogue.SERVER_CUDA
    if catalogue.server_runs_on(build, capability):
        return []
    return [
        Problem(
            key,
            value,
            f"{gpu_model} (compute capability {capability[0]}.{capability[1]}) cannot run the server on its GPU "
            f"(mlstack:serverGpu): {build.package}, built for CUDA {build.cuda}, has kernels for compute capability "
            f"{_server_capabilities(build)} only; choose such a GPU, or set serverGpu to false",
        )
    ]


def server_gpu_driver(driver_branch: int | None, key: str, value: object, where: str, fix: str) -> list[Problem]:
    """The node's NVIDIA driver must be new enough for the server's CUDA build; ``fix`` names the way out."""
    build = catalogue.SERVER_CUDA
    if driver_branch is None or driver_branch >= build.min_driver_branch:
        return []
    return [
        Problem(
            key,
            value,
            f"{where} installs an R{driver_branch} NVIDIA driver, but the server's {build.package} "
            f"(mlstack:serverGpu) is built for CUDA {build.cuda}, which needs {build.min_driver} or newer; {fix}",
        )
    ]


def server_gpu_image_platform(platform: str | None) -> list[Problem]:
    """The server's GPU image can be built for x86-64 alone (None: the builder's own, judged by the build)."""
    if platform is None or platform == catalogue.SERVER_GPU_PLATFORM:
        return []
    return [
        Problem(
            "imagePlatform",
            platform,
            f"the server's GPU image (mlstack:serverGpu) installs {catalogue.SERVER_CUDA.package}, which PyPI has "
            f"for x86-64 alone: set it to {catalogue.SERVER_GPU_PLATFORM}, or serverGpu to false",
        )
    ]


# --- what the nodes must hold ---------------------------------------------------------


def _requests(cpu: str, memory: str) -> capacity.Resources:
    return capacity.from_quantities(float(validate.quantity(cpu)), float(validate.quantity(memory)))


def node_capacity(  # noqa: PLR0913 - the two pools' sizes and what runs on them
    nodes: NodeFacts,
    system_size: str,
    gpu_size: str,
    *,
    system_nodes: int,
    serving: specs.Serving,
    training: specs.Training,
    gpu_nodes: int = 1,
) -> tuple[list[Problem], list[Problem]]:
    """A cloud's system and GPU machine sizes hold the serving pods and the training pod: the problems, and the
    sizes not judged because the cloud's catalogue (``nodes``, its ``NodeFacts``) does not know them."""
    system = (nodes.system_key, system_size, nodes.system_machine(system_size))
    gpu = (nodes.gpu_key, gpu_size, nodes.gpu_machine(gpu_size))
    per_node, per_cluster, gpu_extra = nodes.system_per_node, nodes.system_per_cluster, nodes.gpu_node_extra
    server = _requests(serving.cpu_request, serving.memory_request)
    trainer = _requests(training.cpu, training.memory)
    sidecar = nodes.store_sidecar
    with_sidecar = f" plus {sidecar.name}" if sidecar else ""
    if sidecar is not None:  # both pods mount the store, so both get the sidecar
        server, trainer = server + sidecar.requests, trainer + sidecar.requests
    # With serverGpu the servers run on the GPU pool, and the system pool holds only the publish pod.
    on_system = capacity.PUBLISH_PODS if serving.gpu else capacity.system_pool_pods(serving.replicas)
    serving_pods = capacity.Pods("serving-sized pod", server, on_system)
    # One training pod needs one GPU node; a multi-node Job's pods all run at once, on the pool at its largest.
    training_nodes = 1 if training.nodes == 1 else gpu_nodes
    multi = f"mlstack:trainNodes ({training.nodes}) training pods, each" if training.nodes > 1 else "the training pod"
    more_nodes = ", raise mlstack:gpuMaxNodes" if training.nodes > 1 else ""
    none = capacity.Resources(0, 0)
    problems: list[Problem] = []
    unchecked: list[Problem] = []
    for (key, size, machine), count, node_extra, once, pods, advice in (
        (system, system_nodes, none, per_cluster, serving_pods,
         f"mlstack:replicas ({serving.replicas}) plus one rollout surge and the publish pod, each requesting "
         f"mlstack:serverCpuRequest {serving.cpu_request} and mlstack:serverMemoryRequest "
         f"{serving.memory_request}{with_sidecar}; choose a larger size, raise mlstack:systemNodeCount or lower those"),
        (gpu, training_nodes, gpu_extra, none, capacity.Pods("training pod", trainer, training.nodes),
         f"{multi} requests mlstack:trainerCpu {training.cpu} and mlstack:trainerMemory "
         f"{training.memory}{with_sidecar}; choose a larger size{more_nodes} or lower those"),
        *([(gpu, gpu_nodes, gpu_extra, none,
            capacity.Pods("GPU serving pod", server, serving.max_replicas + capacity.ROLLOUT_MAX_SURGE),
            f"with serverGpu, mlstack:maxReplicas ({serving.max_replicas}) plus one rollout surge on the GPU pool "
            f"at its largest (gpuMaxNodes), each requesting mlstack:serverCpuRequest {serving.cpu_request} and "
            f"mlstack:serverMemoryRequest {serving.memory_request}{with_sidecar}; choose a larger size, raise "
            "gpuMaxNodes or lower those")] if serving.gpu else []),
    ):  # fmt: skip
        if machine is None:
            reason = (
                f"its size is not in {nodes.sizes_listed_in}, so whether its nodes hold what is scheduled there "
                "is not checked"
            )
            unchecked.append(Problem(key, size, reason))
            continue
        problem = capacity.shortfall(nodes.allocatable(machine), count, per_node + node_extra, once, [pods])
        if problem is not None:
            problems.append(Problem(key, size, f"too small: {problem}. What must fit: {advice}"))
    return problems, unchecked


# --- the Kubernetes version ------------------------------------------------------------


def _offered_list(minors: Sequence[str]) -> str:
    return ", ".join(minors) if minors else "none that this catalogue lists"


def kubernetes_version(cloud: Cloud, value: str, on: date, *, extended: bool = False) -> list[Problem]:
    """A pinned minor the cloud still offers for a new cluster on day ``on`` (the catalogue's dates).

    Empty follows the cloud (its default for a new cluster). A minor newer than the catalogue's
    newest passes here: the cloud's own list judges it during preview and up. ``extended``: the
    stack's channel keeps minors past standard support (GKE's EXTENDED).
    """
    minors = cloud.kubernetes_minors
    if value == "" or not minors:
        return []
    name = cloud.service
    offered = cloud.offered_minors(on, extended)
    entry = next((m for m in minors if m.minor == value), None)
    newest = max(catalogue.minor_key(m.minor) for m in minors)
    if entry is None and catalogue.minor_key(value) > newest:
        return []
    if entry is not None and on <= catalogue.offered_until(entry, extended):
        return []
    ended = (
        f"on {catalogue.offered_until(entry, extended).isoformat()}"
        if entry
        else "before any date this catalogue lists"
    )
    reason = (
        f"{name} no longer creates clusters on Kubernetes {value}: its "
        f"{'extended' if extended else 'standard'} support ended {ended}. {name} offers "
        f"{_offered_list(offered)} for a new cluster today ({on.isoformat()}; newer minors if its own list "
        "has them); set one of them, or leave kubernetesVersion empty to take the cloud's default"
    )
    if entry is not None and not extended and on <= entry.extended_until and cloud.extended_support:
        reason += ". " + cloud.extended_support.format(minor=value, until=entry.extended_until.isoformat())
    return [Problem("kubernetesVersion", value, reason)]


def kubernetes_version_offered(value: str, offered: Sequence[str], where: str) -> list[Problem]:
    """A pinned minor that the cloud's own answer (``offered``, read during preview and up) lists."""
    if value == "" or value in offered:
        return []
    return [
        Problem(
            "kubernetesVersion",
            value,
            f"is not offered for a new cluster {where}, which offers "
            f"{_offered_list(sorted(offered, key=catalogue.minor_key))} (asked just now); set one of them, "
            "or leave kubernetesVersion empty to take the cloud's default",
        )
    ]


# --- the keys themselves -----------------------------------------------------------------


def unknown_keys(keys: Iterable[str], declared: Iterable[str]) -> list[Problem]:
    """Every ``mlstack:`` key set that the project does not declare, with the nearest declared one.

    Pulumi passes any key a stack file holds, and one the program never reads is silently
    ignored: ``mlstack:gpuMaxNode: 3`` would leave the pool at its default.
    """
    known = list(declared)
    by_lower = {k.lower(): k for k in known}
    problems = []
    for key in sorted(keys):
        if key in known:
            continue
        close = by_lower.get(key.lower()) or next(
            iter(difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.7)), None
        )
        hint = f"did you mean {config_key(by_lower.get(close, close))}? " if close else ""
        problems.append(
            Problem(
                key,
                None,
                f"is not a key of this program ({hint}every key is declared in Pulumi.yaml, and the README lists them)",
                show_value=False,
            )
        )
    return problems


# --- names, namespaces, addresses, platforms: what the API or the scheduler refuses later ----------------

# Service names are RFC 1035 labels, which start with a letter: "the name of a Service object must be a
# valid RFC 1035 label name" (https://kubernetes.io/docs/concepts/services-networking/service/). The app's
# Services are named after mlstack:appName (<appName>-server, <appName>-metrics), so it must start with one.
_RFC1035_START = re.compile(r"^[a-z]")
# "Avoid creating namespaces with the prefix kube-, since it is reserved for Kubernetes system namespaces"
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/). The app's namespace gets a
# default-deny NetworkPolicy and enforces the restricted Pod Security level: in kube-system that would cut the
# cluster's own DNS off and refuse its agents.
SYSTEM_NAMESPACE_PREFIX: Final = "kube-"
# Addresses a public load balancer never sees as a client's: RFC 1918, shared address space (RFC 6598),
# link-local (RFC 3927), loopback, and IPv6 unique-local and link-local (RFC 4193, RFC 4291).
PRIVATE_RANGES: Final = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
    "fc00::/7", "fe80::/10", "::1/128",
)  # fmt: skip


def app_name(value: str) -> list[Problem]:
    if _RFC1035_START.match(value):
        return []
    return [
        Problem(
            "appName",
            value,
            "must start with a letter: it names the app's Services (<appName>-server), and a Service name is an "
            "RFC 1035 label, which starts with a letter",
        )
    ]


def app_namespace(value: str) -> list[Problem]:
    if not value.startswith(SYSTEM_NAMESPACE_PREFIX):
        return []
    return [
        Problem(
            "namespace",
            value,
            f"is a Kubernetes system namespace (the {SYSTEM_NAMESPACE_PREFIX} prefix is reserved): the app's "
            "namespace denies all traffic by default and enforces the restricted Pod Security level, which would "
            "cut off the cluster's own pods there; choose a namespace of the app's own, such as mlstack",
        )
    ]


def public_source_ranges(ranges: Sequence[str], *, external_load_balancer: bool) -> list[Problem]:
    """On a cloud's public load balancer, ranges a client's address can fall in; private ones never do."""
    if not external_load_balancer:
        return []
    private = [ipaddress.ip_network(cidr) for cidr in PRIVATE_RANGES]
    problems = []
    for cidr in ranges:
        network = ipaddress.ip_network(cidr)
        inside = next((p for p in private if p.version == network.version and network.subnet_of(p)), None)  # type: ignore[arg-type]
        if inside is not None:
            problems.append(
                Problem(
                    "allowedSourceRanges",
                    cidr,
                    f"lies in the private range {inside}: the server is behind a public load balancer, which sees "
                    "each client by its public address, so no client would ever match it; give your office's or "
                    "VPN's public egress range",
                )
            )
    return problems


def image_platform(platform: str | None, *, cloud_gpu_pool: bool) -> list[Problem]:
    """The images run on the cloud's nodes, which are x86-64 (catalogue.CLOUD_IMAGE_PLATFORM)."""
    if not cloud_gpu_pool or platform in (None, catalogue.CLOUD_IMAGE_PLATFORM):
        return []
    return [
        Problem(
            "imagePlatform",
            platform,
            f"builds the images for {platform}, but every GPU machine in the catalogue is x86-64 and the pods would "
            f"fail with 'exec format error'; use {catalogue.CLOUD_IMAGE_PLATFORM}, or leave it empty",
        )
    ]


# --- serving on the GPU pool (mlstack:serverGpu) ------------------------------------------------


def server_gpu_target(gpu: bool, *, gpu_pool: bool) -> list[Problem]:
    """Servers asked onto the GPU pool need a target that has one (a local cluster has none)."""
    if gpu and not gpu_pool:
        return [
            Problem(
                "serverGpu",
                True,
                "this target has no GPU pool (a local kind or minikube cluster); serve on the CPU with "
                "serverGpu false, or deploy to azure or gcp",
            )
        ]
    return []


def server_gpu_pool(  # noqa: PLR0913 - the pool, the servers and the training Job that share it, keyword-only
    *,
    max_replicas: int,
    gpus_per_node: int,
    max_nodes: int,
    train_nodes: int,
    trainer_gpus: int,
    gpu_model: str,
) -> list[Problem]:
    """The GPU pool at its largest holds every server at the autoscaler's ceiling, the rollout's surge pod, and a
    retraining Job beside them (a new model is trained while the old one serves): one GPU per server, whole nodes
    for the Job's pods (each takes trainer_gpus of a node's GPUs)."""
    servers = max_replicas + capacity.ROLLOUT_MAX_SURGE
    training_gpus_per_node = gpus_per_node - trainer_gpus  # what a node running a training pod leaves for servers
    # Training pods first, one per node; servers fill what they leave, then whole nodes.
    room = train_nodes * max(training_gpus_per_node, 0) + max(max_nodes - train_nodes, 0) * gpus_per_node
    if room >= servers:
        return []
    return [
        Problem(
            "gpuMaxNodes",
            max_nodes,
            f"too few GPU nodes for serverGpu: {max_nodes} node(s) of {gpus_per_node} {gpu_model} hold "
            f"{max(room, 0)} serving pod(s) of one GPU beside the training Job ({train_nodes} pod(s) of "
            f"{trainer_gpus} GPU(s)), but mlstack:maxReplicas ({max_replicas}) plus one rollout surge need "
            f"{servers}; raise gpuMaxNodes, or lower maxReplicas",
        )
    ]


# Address blocks reserved for documentation, which no client's address is ever in: IPv4's three TEST-NETs
# (RFC 5737 section 3), IPv6's 2001:db8::/32 (RFC 3849) and 3fff::/20 (RFC 9637). The shipped stack files use
# 203.0.113.0/24 as a placeholder to be replaced.
DOCUMENTATION_RANGES: Final = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")


def documentation_source_ranges(ranges: Sequence[str], *, external_load_balancer: bool) -> list[Problem]:
    """A warning when every range the load balancer admits is a documentation range (``DOCUMENTATION_RANGES``):
    the deploy succeeds, but no client can reach the server. Empty ranges admit anyone, and are not judged."""
    documentation = [ipaddress.ip_network(cidr) for cidr in DOCUMENTATION_RANGES]
    networks = [ipaddress.ip_network(cidr) for cidr in ranges]

    def reserved(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        return any(d.version == network.version and network.subnet_of(d) for d in documentation)  # type: ignore[arg-type]

    if not external_load_balancer or not networks or not all(reserved(n) for n in networks):
        return []
    return [
        Problem(
            "allowedSourceRanges",
            list(ranges),
            "admits only documentation ranges (RFC 5737, RFC 3849, RFC 9637), where no client's address is, so "
            "nobody can reach the server; set your own egress CIDR: pulumi config set --path 'allowedSourceRanges[0]' "
            '"$(curl -s https://ifconfig.me)/32"',
        )
    ]


# What the server process holds on the CPU side before a model: loading ONNX Runtime's CUDA provider and the
# NVIDIA libraries it preloads took it to 268 MiB resident (measured on this project's CI machine, onnxruntime-gpu
# 1.31.1, no GPU: before any CUDA context, which adds more on a GPU node). Under 1 GiB the model and the
# CUDA context would have little room; the limit is the one the kubelet enforces.
SERVER_GPU_MIN_MEMORY_LIMIT: Final = "1Gi"


def server_gpu_memory(memory_limit: str) -> list[Problem]:
    """A GPU server's memory limit leaves room beside the CUDA libraries (SERVER_GPU_MIN_MEMORY_LIMIT says why)."""
    if validate.memory_quantity(memory_limit) >= validate.memory_quantity(SERVER_GPU_MIN_MEMORY_LIMIT):
        return []
    return [
        Problem(
            "serverMemoryLimit",
            memory_limit,
            f"is too small for serverGpu: the CUDA libraries alone take a server to about 268 MiB before a GPU "
            f"context and the model; set serverMemoryLimit to {SERVER_GPU_MIN_MEMORY_LIMIT} or more (and "
            "serverMemoryRequest to match what the model needs)",
        )
    ]
