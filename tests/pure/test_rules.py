"""mlstack.rules: every rule, called directly; each names the key, the value and what is allowed.

The config loader (tests/stacks/test_config*.py) and the components' checks
call these same functions; tests/stacks/test_one_rule_one_place.py shows they
print the same message.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlapp.gate import Gate
from mlstack import capacity, catalogue, rules, specs
from mlstack.clouds import azure, gcp, gcp_locations
from mlstack.problems import Problem, format_problem
from tests.args import SERVING, TRAINING, write_trainer

DEFAULT_BUILD = catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA]
CU130 = catalogue.TRAINER_CUDA_BUILDS["13.0"]


def messages(problems: list[Problem]) -> list[str]:
    return [format_problem(p) for p in problems]


# --- single values ---------------------------------------------------------------------


def test_one_of_and_in_range_name_what_is_allowed() -> None:
    assert rules.one_of("logLevel", "info", ("debug", "info")) == []
    assert messages(rules.one_of("logLevel", "verbose", ("debug", "info"))) == [
        "mlstack:logLevel = 'verbose': must be one of debug, info"
    ]
    assert rules.in_range("replicas", 100, 1, 100) == []
    assert messages(rules.in_range("replicas", 0, 1, 100)) == ["mlstack:replicas = 0: must be between 1 and 100"]
    assert messages(rules.in_range("trainDeadlineSeconds", 10, 60)) == [
        "mlstack:trainDeadlineSeconds = 10: must be at least 60"
    ]


@pytest.mark.parametrize(
    ("price", "sound"), [(-1, True), (0.25, True), (0, False), (-0.5, False), (float("nan"), False)]
)
def test_spot_max_price(price: float, sound: bool) -> None:
    assert (azure.spot_max_price(price) == []) is sound, price


@pytest.mark.parametrize(("name", "repository", "images"), [
    ("mlstack", True, True), ("ml-stack2", True, True), ("1abc", False, True), ("ml.stack", False, True),
    ("ML", False, False), ("ml-", False, False),
])  # fmt: skip
def test_app_name_as_repository_id_and_image_prefix(name: str, repository: bool, images: bool) -> None:
    assert (gcp.artifact_repository_id(name) == []) is repository, name
    assert (rules.image_repository_prefix(name) == []) is images, name


# --- values judged together -------------------------------------------------------------


def test_class_names_need_two_distinct_labels() -> None:
    assert rules.class_names(["cat", "dog"]) == []
    assert rules.class_names([]) == [], "none: the model's own published labels are served"
    assert messages(rules.class_names(["cat"])) == [
        "mlstack:modelLabels = ['cat']: must list at least two class labels"
    ]
    assert messages(rules.class_names(["cat", "cat"])) == [
        "mlstack:modelLabels = ['cat', 'cat']: must not repeat a label"
    ]


def test_maximum_below_minimum_is_refused_naming_the_minimum() -> None:
    assert rules.replicas(2, 2) == []
    assert messages(rules.replicas(4, 3)) == ["mlstack:maxReplicas = 3: must be at least mlstack:replicas (4)"]
    assert rules.gpu_pool_size(0, 1) == []
    assert messages(rules.gpu_pool_size(3, 2)) == ["mlstack:gpuMaxNodes = 2: must be at least mlstack:gpuMinNodes (3)"]
    # Out of range first: a minimum of -1 is not compared with the maximum.
    assert messages(rules.gpu_pool_size(-1, 0)) == [
        "mlstack:gpuMinNodes = -1: must be between 0 and 100",
        "mlstack:gpuMaxNodes = 0: must be between 1 and 100",
    ]


def test_a_limit_below_its_request_is_refused() -> None:
    assert rules.request_and_limit("serverCpuRequest", "250m", "serverCpuLimit", "1") == []
    assert messages(rules.request_and_limit("serverCpuRequest", "250m", "serverCpuLimit", "100m")) == [
        "mlstack:serverCpuLimit = '100m': must be at least mlstack:serverCpuRequest (250m)"
    ]
    (problem,) = rules.request_and_limit("serverMemoryRequest", "256Mi", "serverMemoryLimit", "512MB")
    assert (problem.key, problem.value) == ("serverMemoryLimit", "512MB")
    assert "Kubernetes quantity" in problem.reason


def test_pulumi_waits_at_least_as_long_as_kubernetes_lets_the_job_run() -> None:
    assert rules.train_timeout("75m", 3600) == []
    (problem,) = rules.train_timeout("30m", 3600)
    assert format_problem(problem).startswith(
        "mlstack:trainTimeout = '30m': must be at least mlstack:trainDeadlineSeconds (3600s)"
    )
    (problem,) = rules.train_timeout("forever", 3600)
    assert "must be a duration" in problem.reason


def test_a_zone_lies_in_the_region() -> None:
    assert gcp.gcp_zone(None, "us-central1") == []
    assert gcp.gcp_zone("us-central1-a", "us-central1") == []
    assert messages(gcp.gcp_zone("europe-west4-a", "us-central1")) == [
        "mlstack:gcpZone = 'europe-west4-a': must be a zone of mlstack:gcpRegion (us-central1), "
        "one of us-central1-a, us-central1-b, us-central1-c, us-central1-f; empty means a regional cluster"
    ]


def test_a_zone_that_does_not_exist_is_refused_though_it_looks_right() -> None:
    """Finding: us-central1-z passed, being shaped like a zone; us-central1 has a, b, c and f."""
    assert gcp.gcp_zone("us-central1-z", "us-central1") != []
    assert gcp.gcp_zone("us-central1-d", "us-central1") != []
    assert gcp.gcp_zone("us-south1-ai1b", "us-south1") == [], "an AI zone of the region"


def test_a_region_that_does_not_exist_is_refused_with_the_nearest() -> None:
    """Finding: us-central9 passed, being shaped like a region."""
    (problem,) = gcp.gcp_region("us-central9")
    assert "is not a Compute Engine region (did you mean us-central1?" in problem.reason
    assert gcp.gcp_region("europe-west4") == []


def test_a_gpu_the_zone_does_not_offer_is_refused_with_the_zones_that_do() -> None:
    zones_with_l4 = gcp_locations.gcp_gpu_zones("nvidia-l4", "us-central1")
    assert zones_with_l4, "the table lists L4 in us-central1"
    without = next(z for z in gcp_locations.GCP_ZONES["us-central1"] if z not in zones_with_l4)
    (problem,) = gcp.gke_gpu_where("nvidia-l4", "g2-standard-4", "us-central1", without)
    assert problem.key == "gcpZone"
    assert f"does not offer nvidia-l4 (gkeGpuType); the zones of us-central1 that do: {', '.join(zones_with_l4)}" in (
        problem.reason
    )
    assert gcp.gke_gpu_where("nvidia-l4", "g2-standard-4", "us-central1", zones_with_l4[0]) == []


def test_a_region_without_the_gpu_is_refused_for_a_regional_cluster() -> None:
    region = next(r for r in gcp_locations.GCP_ZONES if gcp_locations.gcp_gpu_zones("nvidia-h100-80gb", r) == ())
    (problem,) = gcp.gke_gpu_where("nvidia-h100-80gb", "a3-highgpu-8g", region, None)
    assert problem.key == "gcpRegion"
    assert "in none of its zones" in problem.reason


def test_an_n1_machine_with_more_vcpus_than_its_gpus_allow_is_refused() -> None:
    """Compute Engine: one V100 allows at most 12 vCPUs on N1 (cloud.google.com/compute/docs/gpus)."""
    (problem,) = gcp.gke_gpu_machine_limits("nvidia-tesla-v100", "n1-standard-16", 1, None)
    assert "has 16 vCPUs, but an N1 machine with 1 nvidia-tesla-v100 may have at most 12" in problem.reason
    assert gcp.gke_gpu_machine_limits("nvidia-tesla-v100", "n1-standard-8", 1, None) == []
    assert gcp.gke_gpu_machine_limits("nvidia-l4", "g2-standard-4", 1, None) == [], "only N1 is limited"


def test_a_machine_sold_only_as_spot_or_flex_start_needs_spot() -> None:
    (problem,) = gcp.gke_on_demand("a3-highgpu-1g", spot=False)
    assert problem.key == "gpuSpot"
    assert "not sold as a plain on-demand VM" in problem.reason
    assert gcp.gke_on_demand("a3-highgpu-1g", spot=True) == []
    assert gcp.gke_on_demand("a3-highgpu-8g", spot=False) == []


@pytest.mark.parametrize(
    ("cloud", "machine", "key", "why"),
    [("gcp", "t2a-standard-4", "gkeSystemMachineType", "GKE taints its nodes kubernetes.io/arch=arm64:NoSchedule"),
     ("gcp", "c4a-standard-4", "gkeSystemMachineType", "never be scheduled"),
     ("azure", "Standard_D4ps_v5", "aksSystemVmSize", "AKS does not taint Arm nodes"),
     ("azure", "Standard_D4pds_v6", "aksSystemVmSize", "exec format error")],
)  # fmt: skip
def test_an_arm_system_pool_is_refused_for_the_clouds_own_reason(cloud: str, machine: str, key: str, why: str) -> None:
    (problem,) = {"gcp": gcp.arm_system_pool, "azure": azure.arm_system_pool}[cloud](machine)
    assert problem.key == key
    assert why in problem.reason
    assert gcp.arm_system_pool("e2-standard-4") == azure.arm_system_pool("Standard_D4s_v5") == []


def test_a_pod_cannot_span_gpu_nodes() -> None:
    assert rules.trainer_gpus_per_node(1, 1, "nvidia-tesla-t4") == []
    assert messages(rules.trainer_gpus_per_node(2, 1, "nvidia-tesla-t4")) == [
        "mlstack:trainerGpus = 2: a node of the GPU pool carries 1 nvidia-tesla-t4 GPU(s) and a pod cannot span "
        "nodes, so the trainer can request at most 1"
    ]
    # Only the sizes that would hold the trainer are named, fewest GPUs first.
    sizes = {"Standard_NC4as_T4_v3": 1, "Standard_NC64as_T4_v3": 4, "Standard_NC8x": 2}
    (problem,) = rules.trainer_gpus_per_node(2, 1, "nvidia-tesla-t4", sizes)
    assert problem.reason.endswith("at most 1; sizes with that many: Standard_NC8x, Standard_NC64as_T4_v3")


# --- the GCP GPU pool ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu_type", "machine_type", "count"),
    [
        ("nvidia-tesla-t4", "n1-standard-4", 1),
        ("nvidia-tesla-t4", "n1-highmem-16", 4),
        ("nvidia-tesla-v100", "n1-standard-32", 8),
        ("nvidia-tesla-p100", "n1-standard-8", 2),
        ("nvidia-tesla-p4", "n1-custom-8-30720", 4),
        ("nvidia-l4", "g2-standard-4", 1),
        ("nvidia-l4", "g2-standard-24", 2),
        ("nvidia-l4", "g2-standard-48", 4),
        ("nvidia-l4", "g2-standard-96", 8),
        ("nvidia-tesla-a100", "a2-highgpu-1g", 1),
        ("nvidia-tesla-a100", "a2-megagpu-16g", 16),
        ("nvidia-a100-80gb", "a2-ultragpu-8g", 8),
        ("nvidia-h100-80gb", "a3-highgpu-8g", 8),
    ],
)
def test_real_gcp_gpu_pools_pass(gpu_type: str, machine_type: str, count: int) -> None:
    assert gcp.gcp_gpu_pool(gpu_type, machine_type, count) == [], (gpu_type, machine_type, count)


@pytest.mark.parametrize(
    ("gpu_type", "machine_type", "count", "key", "must_say"),
    [
        # T4 attaches to N1 only; the message says where it does run.
        ("nvidia-tesla-t4", "g2-standard-4", 1, "gkeGpuMachineType", "runs on N1 machines only"),
        # An unknown machine family for the GPU.
        ("nvidia-tesla-t4", "e2-standard-4", 1, "gkeGpuMachineType", "n1-standard-4"),
        # Not an N1 machine type at all, though it starts with n1.
        ("nvidia-tesla-t4", "n1-ultramem-40", 1, "gkeGpuMachineType", "n1-standard-N"),
        # 3 T4s: N1 takes 1, 2 or 4.
        ("nvidia-tesla-t4", "n1-standard-8", 3, "gkeGpuCount", "1, 2, 4"),
        # 8 is a V100 count, not a T4 one.
        ("nvidia-tesla-t4", "n1-standard-32", 8, "gkeGpuCount", "1, 2, 4"),
        # L4's count is fixed by the G2 machine type.
        ("nvidia-l4", "g2-standard-4", 2, "gkeGpuCount", "exactly 1"),
        ("nvidia-l4", "g2-standard-48", 1, "gkeGpuCount", "exactly 4"),
        # L4 on a G2 size that does not exist lists the ones that do.
        ("nvidia-l4", "g2-standard-2", 1, "gkeGpuMachineType", "g2-standard-4, g2-standard-8"),
        # A100 40GB is A2 Standard; the A2 Ultra machines carry the 80GB one.
        ("nvidia-tesla-a100", "a2-ultragpu-1g", 1, "gkeGpuMachineType", "a2-highgpu-1g"),
        ("nvidia-a100-80gb", "a2-highgpu-1g", 1, "gkeGpuMachineType", "a2-ultragpu-1g"),
        ("nvidia-h100-80gb", "n1-standard-4", 1, "gkeGpuMachineType", "a3-highgpu-8g"),
        # An unknown GPU type lists every known one.
        ("nvidia-tesla-k80", "n1-standard-4", 1, "gkeGpuType", "nvidia-tesla-t4, nvidia-tesla-v100"),
    ],
)
def test_impossible_gcp_gpu_pools_name_the_key_and_the_choices(
    gpu_type: str, machine_type: str, count: int, key: str, must_say: str
) -> None:
    problems = gcp.gcp_gpu_pool(gpu_type, machine_type, count)
    assert [p.key for p in problems] == [key], (gpu_type, machine_type, count, problems)
    assert must_say in problems[0].reason, problems[0]


def test_gke_gpu_pool_judges_the_driver_the_gpu_and_the_trainer_together() -> None:
    assert (
        gcp.gke_gpu_pool(
            "nvidia-tesla-t4", "n1-standard-4", 1, driver_version="DEFAULT", trainer_gpus=1, build=DEFAULT_BUILD
        )
        == []
    )
    # CUDA 13 on a V100 under GKE's DEFAULT (R535) driver: both the GPU and the driver are wrong.
    found = gcp.gke_gpu_pool(
        "nvidia-tesla-v100", "n1-standard-8", 1, driver_version="DEFAULT", trainer_gpus=1, build=CU130
    )
    assert [p.key for p in found] == ["gkeGpuType", "gkeGpuDriverVersion"], found
    assert "not supported by the trainer's CUDA 13.0 build" in found[0].reason
    assert "installs an R535 NVIDIA driver" in found[1].reason
    found = gcp.gke_gpu_pool(
        "nvidia-tesla-t4", "n1-standard-4", 1, driver_version="R535", trainer_gpus=2, build=DEFAULT_BUILD
    )
    assert [p.key for p in found] == ["gkeGpuDriverVersion", "trainerGpus"], found


# --- the AKS GPU pool ---------------------------------------------------------------


def test_aks_gpu_pool_passes_a_sound_pool() -> None:
    assert azure.aks_gpu_pool("Standard_NC64as_T4_v3", 4, DEFAULT_BUILD) == []
    assert azure.aks_gpu_pool("Standard_NC4as_T4_v3", 1, CU130) == []


def test_aks_gpu_pool_points_at_the_sizes_that_carry_enough_gpus() -> None:
    (problem,) = azure.aks_gpu_pool("Standard_NC4as_T4_v3", 2, DEFAULT_BUILD)
    assert problem.key == "trainerGpus"
    assert problem.reason.endswith("sizes with that many: Standard_NC64as_T4_v3"), problem.reason


def test_aks_gpu_pool_refuses_a_size_outside_the_catalogue() -> None:
    (problem,) = azure.aks_gpu_pool("Standard_D4s_v5", 1, DEFAULT_BUILD)
    assert format_problem(problem).startswith("mlstack:aksGpuVmSize = 'Standard_D4s_v5': has no GPU")


# --- the trainer's CUDA build ----------------------------------------------------------


def test_a_gpu_the_build_has_no_kernels_for_is_refused_with_the_build_that_has() -> None:
    assert rules.trainer_gpu(DEFAULT_BUILD, "nvidia-tesla-v100", (7, 0), "gkeGpuType", "nvidia-tesla-v100") == []
    (problem,) = rules.trainer_gpu(CU130, "nvidia-tesla-v100", (7, 0), "gkeGpuType", "nvidia-tesla-v100")
    assert "nvidia-tesla-v100 (compute capability 7.0) is not supported by the trainer's CUDA 13.0 build" in (
        problem.reason
    )
    assert problem.reason.endswith("set mlstack:trainerCuda to 12.6, or choose a newer GPU")


def test_a_driver_older_than_the_build_needs_is_refused() -> None:
    assert rules.trainer_driver(CU130, 580, "gkeGpuDriverVersion", "LATEST", "GKE") == []
    assert rules.trainer_driver(CU130, None, "gkeGpuDriverVersion", "INSTALLATION_DISABLED", "GKE") == []
    (problem,) = rules.trainer_driver(CU130, 535, "gkeGpuDriverVersion", "DEFAULT", "GKE")
    assert problem.reason == (
        "GKE installs an R535 NVIDIA driver, but the trainer's CUDA 13.0 build (mlstack:trainerCuda) "
        "needs 580.65.06 or newer"
    )


# --- what the nodes must hold ------------------------------------------------------------


def test_gke_system_nodes_must_hold_the_serving_pods_and_their_sidecars() -> None:
    problems, unchecked = rules.node_capacity(
        gcp.GKE_NODES, "e2-standard-2", "n1-standard-4", system_nodes=1, serving=SERVING, training=TRAINING
    )
    assert unchecked == []
    (problem,) = problems
    assert (problem.key, problem.value) == ("gkeSystemMachineType", "e2-standard-2")
    assert problem.reason.startswith("too small: 1 node(s) of it hold 1 serving-sized pod(s) of 500m CPU and 512 MiB")
    assert "but 4 must run" in problem.reason, "the replicas, one rollout surge and the publish pod"
    assert "mlstack:replicas (2) plus one rollout surge and the publish pod" in problem.reason
    assert "plus the GCS FUSE sidecar" in problem.reason
    assert rules.node_capacity(
        gcp.GKE_NODES, "e2-standard-2", "n1-standard-4", system_nodes=3, serving=SERVING, training=TRAINING
    ) == ([], [])


def test_a_size_the_catalogue_does_not_know_is_left_unchecked_not_refused() -> None:
    problems, unchecked = rules.node_capacity(
        gcp.GKE_NODES, "e2-standard-4", "m3-ultramem-32", system_nodes=1, serving=SERVING, training=TRAINING
    )
    assert problems == []
    assert [format_problem(p) for p in unchecked] == [
        "mlstack:gkeGpuMachineType = 'm3-ultramem-32': its size is not in mlstack/clouds/gcp.py, "
        "so whether its nodes hold what is scheduled there is not checked"
    ]


def test_aks_gpu_nodes_must_hold_the_training_pod() -> None:
    assert rules.node_capacity(
        azure.AKS_NODES, "Standard_D4s_v5", "Standard_NC4as_T4_v3", system_nodes=1, serving=SERVING, training=TRAINING
    ) == ([], [])
    problems, _ = rules.node_capacity(
        azure.AKS_NODES,
        "Standard_D4s_v5",
        "Standard_NC4as_T4_v3",
        system_nodes=1,
        serving=SERVING,
        training=replace(TRAINING, cpu="4"),
    )
    (problem,) = problems
    assert problem.key == "aksGpuVmSize"
    assert "the training pod requests mlstack:trainerCpu 4" in problem.reason
    assert "GCS FUSE" not in problem.reason, "AKS pods have no sidecar"


def test_the_system_pool_holds_the_replicas_the_surge_and_the_publish_pod() -> None:
    assert capacity.system_pool_pods(2) == 2 + capacity.ROLLOUT_MAX_SURGE + capacity.PUBLISH_PODS == 4
    # Exactly four serving-sized pods fit: a D8s_v5 holds them beside AKS's own pods and KEDA's, a D4s_v5 one.
    tight = replace(SERVING, replicas=2, cpu_request="1", memory_request="256Mi", memory_limit="256Mi")
    assert rules.node_capacity(
        azure.AKS_NODES, "Standard_D8s_v5", "Standard_NC4as_T4_v3", system_nodes=1, serving=tight, training=TRAINING
    ) == ([], [])
    (problem,), _ = rules.node_capacity(
        azure.AKS_NODES, "Standard_D4s_v5", "Standard_NC4as_T4_v3", system_nodes=1, serving=tight, training=TRAINING
    )
    assert "hold 1 serving-sized pod(s) of 1000m CPU and 256 MiB but 4 must run" in problem.reason


# --- the trainer and its gate -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "direction", "threshold", "gate"),
    [
        ("accuracy", "maximize", "", Gate("accuracy", "maximize", 0.9)),  # minAccuracy, the digits example's gate
        ("accuracy", "maximize", "0.97", Gate("accuracy", "maximize", 0.97)),
        ("rmse", "minimize", "0.3", Gate("rmse", "minimize", 0.3)),
        ("val/f1", "maximize", "1e-1", Gate("val/f1", "maximize", 0.1)),
    ],
)
def test_a_gate_is_its_metric_direction_and_threshold(metric: str, direction: str, threshold: str, gate: Gate) -> None:
    assert rules.gate(metric, direction, threshold, 0.9) == (gate, [])
    assert Gate.parse(str(gate)) == gate, "the publish Job's command carries the same gate"


@pytest.mark.parametrize(
    ("metric", "direction", "threshold", "message"),
    [
        ("rmse", "minimize", "", "mlstack:gateThreshold = '': must be set for the gate on rmse (minimize): set "
         "gateThreshold; only the accuracy gate (maximize) takes mlstack:minAccuracy as its threshold"),
        ("accuracy", "minimize", "", "mlstack:gateThreshold = '': must be set for the gate on accuracy (minimize)"),
        ("accuracy", "up", "0.9", "mlstack:gateDirection = 'up': must be one of maximize, minimize"),
        ("9lives", "maximize", "1", "mlstack:gateMetric = '9lives': metric name '9lives' must be 1-128 characters"),
        ("acc uracy", "maximize", "1", "mlstack:gateMetric = 'acc uracy': metric name"),
        ("accuracy", "maximize", "high", "mlstack:gateThreshold = 'high': gate threshold 'high' is not a number"),
        ("accuracy", "maximize", "nan", "mlstack:gateThreshold = 'nan': gate threshold 'nan' must be a finite number"),
        ("accuracy", "maximize", "0.123456789", "mlstack:gateThreshold = '0.123456789': has more digits than the "
         "gate's written form keeps"),
    ],
)  # fmt: skip
def test_a_gate_that_cannot_be_judged_is_refused_naming_its_key(
    metric: str, direction: str, threshold: str, message: str
) -> None:
    gate, problems = rules.gate(metric, direction, threshold, 0.9)
    assert gate is None
    (found,) = messages(problems)
    assert found.startswith(message), found


def test_the_metric_name_rule_is_the_apps_own_wording() -> None:
    """One rule, one wording: the config says what mlapp.gate says to the publisher."""
    from mlapp.gate import GateError, check_metric_name

    with pytest.raises(GateError) as caught:
        check_metric_name("bad metric")
    (problem,) = rules.gate("bad metric", "maximize", "1", 0.9)[1]
    assert problem.reason == str(caught.value)


def test_a_trainer_command_is_empty_or_bounded_non_empty_words() -> None:
    assert rules.trainer_command([]) == []
    assert rules.trainer_command(["python", "train.py", "--trees", "200"]) == []
    assert messages(rules.trainer_command(["python", ""])) == ["mlstack:trainerCommand[1] = '': must not be empty"]
    assert messages(rules.trainer_command(["x"] * (rules.MAX_COMMAND_ENTRIES + 1))) == [
        f"mlstack:trainerCommand = '{rules.MAX_COMMAND_ENTRIES + 1} entries': must hold at most 100"
    ]
    (long,) = rules.trainer_command(["python", "y" * (rules.MAX_COMMAND_ENTRY_LENGTH + 1)])
    assert (long.key, long.reason) == ("trainerCommand[1]", "must be at most 1024 characters")
    assert messages(rules.trainer_command(["a\0b"])) == [
        "mlstack:trainerCommand[0] = 'a\\x00b': must not contain a NUL character"
    ]
    assert rules.trainer_command(["y" * rules.MAX_COMMAND_ENTRY_LENGTH] * rules.MAX_COMMAND_ENTRIES) == []


def test_a_trainer_context_is_a_directory_of_the_project_with_a_dockerfile(tmp_path: Path) -> None:
    write_trainer(tmp_path / "examples", "mine")
    (tmp_path / "examples" / "empty").mkdir()
    write_trainer(tmp_path / "examples", "digits")  # specs.DIGITS_CONTEXT, the default

    def judged(context: str, image: bool = False) -> list[str]:
        return messages(rules.trainer_context(context, tmp_path, trainer_image_set=image))

    assert judged("examples/mine") == []
    assert judged("") == [], f"the default, {specs.DIGITS_CONTEXT}"
    assert judged("", image=True) == []
    assert judged("examples/mine", image=True) == [
        "mlstack:trainerContext = 'examples/mine': must be empty when mlstack:trainerImage is set: a prebuilt "
        "trainer is not built; set one or the other"
    ]
    assert judged("/srv/trainer") == [
        "mlstack:trainerContext = '/srv/trainer': must be a directory relative to the project, e.g. examples/digits"
    ]
    assert judged("examples/../../outside") == [
        "mlstack:trainerContext = 'examples/../../outside': must stay inside the project: no '..'"
    ]
    (missing,) = judged("examples/nowhere")
    assert missing.startswith("mlstack:trainerContext = 'examples/nowhere': names no directory of the project")
    (no_dockerfile,) = judged("examples/empty")
    assert no_dockerfile.startswith("mlstack:trainerContext = 'examples/empty': must hold a Dockerfile")
    (tmp_path / "examples" / "digits" / "Dockerfile").unlink()
    (default_broken,) = judged("")
    assert default_broken.startswith("mlstack:trainerContext = '': must hold a Dockerfile")


@pytest.mark.parametrize(
    "ranges", [["203.0.113.0/24"], ["192.0.2.7/32", "198.51.100.0/25"], ["2001:db8:1::/48"], ["3fff::/24"]]
)
def test_only_documentation_source_ranges_are_warned_about(ranges: list[str]) -> None:
    """Bug: the shipped dev stack admitted only 203.0.113.0/24, a documentation range, so a deploy that
    succeeded answered nobody, and nothing said why."""
    assert messages(rules.documentation_source_ranges(ranges, external_load_balancer=True)) == [
        f"mlstack:allowedSourceRanges = {ranges!r}: admits only documentation ranges (RFC 5737, RFC 3849, "
        "RFC 9637), where no client's address is, so nobody can reach the server; set your own egress CIDR: "
        "pulumi config set --path 'allowedSourceRanges[0]' \"$(curl -s https://ifconfig.me)/32\""
    ]


@pytest.mark.parametrize(
    ("ranges", "external"),
    [
        (["203.0.113.0/24", "81.2.69.0/24"], True),  # one real range: that one reaches the server
        ([], True),  # admits anyone
        (["203.0.112.0/23"], True),  # wider than the documentation range: real addresses too
        (["203.0.113.0/24"], False),  # no public load balancer (kind): the range is not what callers meet
    ],
)
def test_source_ranges_with_a_real_address_are_not_warned_about(ranges: list[str], external: bool) -> None:
    assert rules.documentation_source_ranges(ranges, external_load_balancer=external) == []
