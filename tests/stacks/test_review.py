"""tools/review.py on the shipped stacks: a config change a provider must answer with a replacement is
flagged, naming the resource, the input and its old and new value; one it updates in place is not,
though the render's diff shows it; and ``make review`` renders a real base in a git worktree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import SharedRun
from tools import render, review

Rendered = Callable[[str, Mapping[str, Any]], Path]

GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_POOL = "gcp:container/nodePool:NodePool"
AKS_POOL = "azure-native:containerservice:AgentPool"


@pytest.fixture(scope="module")
def rendered(shared_run: SharedRun, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The render of a stack with config overrides, as ``--set`` gives them, made once per module."""
    made: dict[str, Path] = {}

    def make(stack: str, overrides: Mapping[str, Any]) -> Path:
        key = f"{stack}-{sorted(overrides.items())}"
        if key not in made:
            out = tmp_path_factory.mktemp("review")
            assert render.write_render(stack, shared_run(stack, overrides=overrides), out) == []
            made[key] = out / stack
        return made[key]

    return make


def _flagged(verdict: review.Verdict) -> set[tuple[str, str, str]]:
    """(type, name, the first changed input) of each replacement, the input without list indices."""
    return {(r.type, r.name, r.reason.split(" changed:")[0].split("[")[0]) for r in verdict.replaced}


REPLACING = [
    pytest.param(
        "gke", {"gkeGpuType": "nvidia-l4", "gkeGpuMachineType": "g2-standard-4", "gpuMaxNodes": 3},
        {(GKE_POOL, "gke-gpu", "nodeConfig.guestAccelerators")}, id="gke-l4-gpus",
    ),
    pytest.param("gke", {"gpuSpot": False}, {(GKE_POOL, "gke-gpu", "nodeConfig.spot")}, id="gke-on-demand"),
    pytest.param(
        "gke", {"gcpZone": "us-central1-b"},
        {(GKE_CLUSTER, "gke-cluster", "location"), (GKE_POOL, "gke-gpu", "location"),
         (GKE_POOL, "gke-system", "location")},
        id="gke-zone",
    ),
    pytest.param(
        "dev", {"aksGpuVmSize": "Standard_NC8as_T4_v3"}, {(AKS_POOL, "mlstack-gpu-pool", "vmSize")}, id="aks-vm-size"
    ),
    pytest.param(
        "dev", {"azureLocation": "westus2"},
        {("azure-native:resources:ResourceGroup", "mlstack-rg", "location"),
         ("azure-native:containerservice:ManagedCluster", "mlstack-cluster", "location"),
         ("azure-native:containerregistry:Registry", "mlstack-registry", "location")},
        id="aks-location",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("stack", "overrides", "expected"), REPLACING)
def test_a_change_the_provider_cannot_make_in_place_is_flagged(
    rendered: Rendered, stack: str, overrides: dict[str, Any], expected: set[tuple[str, str, str]]
) -> None:
    verdict = review.compare(rendered(stack, {}), rendered(stack, overrides))
    flagged = _flagged(verdict)
    assert expected <= flagged, f"{stack} {overrides}: flagged {sorted(flagged)}"
    # Every cloud replacement flagged is one the change meant: no rule fires on what it did not touch.
    clouds = {f for f in flagged if not f[0].startswith(("kubernetes:", "tls:", "random:"))}
    assert clouds <= expected | {f for f in clouds if f[2] == "location"}, f"{stack} {overrides}: {sorted(clouds)}"
    assert verdict.created == verdict.deleted == []
    for replacement in verdict.replaced:
        assert replacement.message().startswith(f"this change replaces {replacement.type} {replacement.name} (")
        assert replacement.source


def test_the_l4_change_names_old_and_new_gpu_and_the_source(rendered: Rendered) -> None:
    overrides = {"gkeGpuType": "nvidia-l4", "gkeGpuMachineType": "g2-standard-4", "gpuMaxNodes": 3}
    verdict = review.compare(rendered("gke", {}), rendered("gke", overrides))
    (pool,) = [r for r in verdict.replaced if r.type == GKE_POOL]
    assert pool.message() == (
        f"this change replaces {GKE_POOL} gke-gpu "
        "(nodeConfig.guestAccelerators[0].type changed: nvidia-tesla-t4 -> nvidia-l4)"
    )
    assert "terraform-provider-google" in pool.source
    assert "node_config.go" in pool.source
    # The render shows the new pool to a reader too: its summary row, not only its inputs.
    diff = "".join(review.unified_diff("gke", rendered("gke", {}), rendered("gke", overrides)))
    assert "+| gke-gpu-5d6e7f8 | gke-cluster-1a2b3c4 | g2-standard-4 | 1 x nvidia-l4 | 0-3 (autoscaled) |" in diff
    assert "+    machineType: g2-standard-4\n" in diff
    assert "+    totalMaxNodeCount: 3\n" in diff


IN_PLACE = [
    pytest.param("gke", {"gpuMaxNodes": 3}, id="gke-max-nodes"),
    pytest.param("dev", {"gpuMaxNodes": 3}, id="aks-max-nodes"),
    # terraform-provider-google resizes a node pool's machines in place since v5.10.0.
    pytest.param("gke", {"gkeGpuMachineType": "n1-standard-8"}, id="gke-machine-type"),
    pytest.param("gke", {"gkeReleaseChannel": "STABLE"}, id="gke-release-channel"),
]


@pytest.mark.parametrize(("stack", "overrides"), IN_PLACE)
def test_a_change_made_in_place_is_in_the_diff_but_not_flagged(
    rendered: Rendered, stack: str, overrides: dict[str, Any]
) -> None:
    base, head = rendered(stack, {}), rendered(stack, overrides)
    verdict = review.compare(base, head)
    assert verdict.replaced == [], [r.message() for r in verdict.replaced]
    diff = review.unified_diff(stack, base, head)
    assert any(line.startswith(f"+++ b/{stack}/{render.RESOURCES}/") for line in diff), "the change is not rendered"


def test_make_review_renders_the_base_in_a_worktree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert review.main(["--base", "HEAD", "--stack", "local", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("=== stack local: ")
    assert "=== what `pulumi up` would replace, create and delete\n" in out
    assert (tmp_path / "base" / "local" / render.RESOURCES).is_dir()
    assert (tmp_path / "head" / "local" / "summary.md").is_file()


def test_a_base_that_is_not_a_commit_fails_the_review(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = review.main(["--base", "no-such-ref-anywhere", "--stack", "local", "--out", str(tmp_path)])
    assert code == review.EXIT_RENDER_FAILED
    assert "git worktree add failed" in capsys.readouterr().err


# The commit that turned Dataplane V2 on (GKE's datapath is fixed at creation): its render showed
# nothing of the cloud, so review saw no change at all.
DATAPLANE_V2_COMMIT = "8d1f8e1"


def test_the_commit_that_enabled_dataplane_v2_is_flagged_as_replacing_the_gke_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--base",
        f"{DATAPLANE_V2_COMMIT}^",
        "--head",
        DATAPLANE_V2_COMMIT,
        "--stack",
        "gke",
        "--out",
        str(tmp_path),
    ]
    assert review.main(argv) == 0
    out = capsys.readouterr().out
    assert (
        f"  ! this change replaces {GKE_CLUSTER} gke-cluster (datapathProvider changed: (unset) -> ADVANCED_DATAPATH)\n"
        "      source: hashicorp/terraform-provider-google google/services/container/resource_container_cluster.go: "
        "ForceNew\n"
    ) in out
    assert "+  datapathProvider: ADVANCED_DATAPATH\n" in out


def test_a_renderer_that_crashes_is_not_read_as_invalid_objects(tmp_path: Path) -> None:
    """Bug: Python exits 1 on an uncaught exception, the renderer's own status for invalid objects; a renderer
    copied into an old commit that failed to import was read as "invalid objects" with nothing rendered, and the
    review went on with an empty side instead of falling back to the commit's own renderer."""
    tree = tmp_path / "tree"
    (tree / "tools").mkdir(parents=True)
    (tree / "tools" / "__init__.py").write_text("")
    (tree / "tools" / "render.py").write_text("import mlstack.not_in_this_commit\n")
    with pytest.raises(review.ReviewError, match="did not render"):
        review._render_side(tree, "dev", tmp_path / "out", "base")
