"""The app images: built and pushed by digest, wired into the Job and the Deployment, in parallel with the cluster."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from components import image
from components.image import AppImage, AppImageArgs
from components.target import Registry
from tests.conftest import STACKS
from tools import harness, mocks_image

RunStack = Callable[..., harness.StackRun]
IMAGE = mocks_image.IMAGE
JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DIGEST = "sha256:" + "ab" * 32
PREBUILT = {
    "trainerImage": f"registry.example.com/ml/trainer:1.0@{DIGEST}",
    "serverImage": f"registry.example.com/ml/server:1.0@{'sha256:' + 'cd' * 32}",
}
# What the images must never wait for: the cluster, its pools, the Kubernetes
# provider built from its kubeconfig, or anything running in it.
CLUSTER_TYPES = {
    "azure-native:containerservice:ManagedCluster",
    "azure-native:containerservice:AgentPool",
    "gcp:container/cluster:Cluster",
    "gcp:container/nodePool:NodePool",
    "pulumi:providers:kubernetes",
}
SECRET_PASSWORD = "registry-push-token-0123456789"


def is_cluster_side(registration: harness.Registration) -> bool:
    return (
        registration.type in CLUSTER_TYPES
        or registration.type.startswith("kubernetes:")
        or "kubeconfig" in registration.name.lower()
    )


def upstream(result: harness.StackRun, urn: str) -> dict[str, list[str]]:
    """Everything ``urn`` waits for (explicit dependencies, parent chain, provider), each with a path to it."""
    paths: dict[str, list[str]] = {urn: [urn]}
    queue = deque([urn])
    while queue:
        current = result.registrations[queue.popleft()]
        for next_urn in [*current.dependencies, current.parent, current.provider_urn]:
            if next_urn in result.registrations and next_urn not in paths:
                paths[next_urn] = [*paths[current.urn], next_urn]
                queue.append(next_urn)
    return paths


def chain(result: harness.StackRun, path: list[str]) -> str:
    return " ← ".join(f"{result.by_urn(u).name} ({result.by_urn(u).type.rsplit(':', 1)[-1]})" for u in path)


def container_image(registration: harness.Registration) -> Any:
    containers = registration.inputs["spec"]["template"]["spec"]["containers"]
    return containers[0]["image"]


def schema_problems(result: harness.StackRun) -> list[str]:
    """Strict-schema problems of every Kubernetes object, against the stack's own Kubernetes version."""
    version = result.kubernetes_version
    assert version, "the stack names no kubernetesVersion"
    return [p for _, obj in harness.kubernetes_manifests(result) for p in harness.validate_manifest(obj, version)]


def images_by_target(result: harness.StackRun) -> dict[str, harness.Registration]:
    return {r.inputs["target"]: r for r in result.of_type(IMAGE)}


# --- the source revision (pure) ----------------------------------------------------


def write_app(root: Path) -> Path:
    app = root / "app"
    (app / "mlapp").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM python:3.11-slim AS server\n", encoding="utf-8")
    (app / "mlapp" / "serve.py").write_text("print('serve')\n", encoding="utf-8")
    return app


def test_content_hash_is_stable_and_follows_every_file(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    first = image.content_hash(app)
    assert first == image.content_hash(app), "the same files must give the same revision"
    assert first.startswith("src-"), first
    assert len(first) == len("src-") + 16, first

    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "serve.cpython-311.pyc").write_bytes(b"\0cache")
    assert image.content_hash(app) == first, "a local bytecode cache changed the revision"

    (app / "mlapp" / "serve.py").write_text("print('served')\n", encoding="utf-8")
    edited = image.content_hash(app)
    assert edited != first, "an edited file left the revision unchanged"

    (app / "mlapp" / "serve.py").chmod(0o755)
    assert image.content_hash(app) != edited, "an executable bit is part of the image but not of the revision"

    (app / "mlapp" / "serve.py").rename(app / "mlapp" / "server.py")
    assert image.content_hash(app) not in {first, edited}, "a renamed file left the revision unchanged"


def test_content_hash_of_a_missing_directory_is_that_of_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert image.content_hash(tmp_path / "missing") == image.content_hash(tmp_path / "empty")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_revision_is_the_git_commit_of_a_clean_app_else_its_content_hash(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "app")
    git(tmp_path, "commit", "-q", "-m", "app")
    app_commit = git(tmp_path, "rev-parse", "HEAD")
    assert image.source_revision(app) == app_commit[:12]

    # A commit elsewhere in the repository leaves the app's revision (and its image) alone.
    (tmp_path / "README.md").write_text("docs\n", encoding="utf-8")
    git(tmp_path, "add", "README.md")
    git(tmp_path, "commit", "-q", "-m", "docs")
    assert image.source_revision(app) == app_commit[:12], "a docs commit changed the app's revision"

    (app / "mlapp" / "serve.py").write_text("print('edited')\n", encoding="utf-8")
    dirty = image.source_revision(app)
    assert dirty == image.content_hash(app), "an edited app/ must be tagged by its content, not a commit"

    git(tmp_path, "checkout", "-q", "--", "app")
    (app / "mlapp" / "new.py").write_text("x = 1\n", encoding="utf-8")
    assert image.source_revision(app) == image.content_hash(app), "an untracked file is in the build context"
    assert image.source_revision(app) != dirty


def test_revision_outside_git_is_the_content_hash(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    assert image.git_revision(app) is None
    assert image.source_revision(app) == image.content_hash(app)


def test_registry_host_drops_the_repository_path() -> None:
    assert image.registry_host("us-central1-docker.pkg.dev/my-ml-project/mlstack") == "us-central1-docker.pkg.dev"
    assert image.registry_host("localhost:5001") == "localhost:5001"


# --- the component under mocks ---------------------------------------------------------


def build(args: AppImageArgs) -> tuple[harness.StackRun, dict[str, Any]]:
    def program() -> None:
        built = AppImage("mlstack", args)
        pulumi.export("trainer", built.trainer_ref)
        pulumi.export("server", built.server_ref)

    result = harness.run(program, {})
    return result, result.exports


def registry_with_credentials() -> Registry:
    return Registry(server="registry.example.com/ml", username="pusher", password=pulumi.Output.secret(SECRET_PASSWORD))


def test_both_targets_are_built_for_amd64_pushed_and_tagged_with_the_revision() -> None:
    result, exports = build(
        AppImageArgs(registry=registry_with_credentials(), repository_prefix="mlstack", revision="0123456789ab")
    )
    images = images_by_target(result)
    assert set(images) == {"trainer", "server"}
    (component,) = result.of_type("mlstack:image:AppImage")
    for target, registration in images.items():
        inputs = registration.inputs
        where = f"{registration.name} ({target})"
        assert registration.parent == component.urn, f"{where}: not a child of AppImage"
        assert inputs["push"] is True, where
        assert inputs["platforms"] == ["linux/amd64"], where
        assert inputs["context"] == {"location": "app"}, where
        assert inputs["dockerfile"] == {"location": "app/Dockerfile"}, where
        repository = f"registry.example.com/ml/mlstack-{target}"
        assert inputs["tags"] == [f"{repository}:0123456789ab"], where
        ref = exports[target]
        assert ref == f"{repository}:0123456789ab@{registration.outputs['digest']}", f"{where}: ref {ref}"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", ref.split("@")[1]), ref
    assert exports["trainer"] != exports["server"]


def test_registry_credentials_reach_the_build_with_the_password_secret() -> None:
    result, _ = build(AppImageArgs(registry=registry_with_credentials(), repository_prefix="mlstack", revision="r1"))
    for registration in result.of_type(IMAGE):
        registries = registration.inputs["registries"]
        # The secret marker sits on the password or on the whole list that holds it.
        list_secret = harness.is_secret_value(registries)
        (entry,) = registries["value"] if list_secret else registries
        # docker logs in per host: Artifact Registry's server carries a repository path.
        assert harness.plain(entry["address"]) == "registry.example.com", registration.name
        assert harness.plain(entry["username"]) == "pusher", registration.name
        assert list_secret or harness.is_secret_value(entry["password"]), (
            f"{registration.name}: the push password is not secret"
        )
        assert harness.plain(entry["password"]) == SECRET_PASSWORD


def test_without_credentials_the_push_uses_the_users_docker_login() -> None:
    local = Registry(server="localhost:5001")
    result, _ = build(AppImageArgs(registry=local, repository_prefix="mlstack", revision="r1"))
    for registration in result.of_type(IMAGE):
        assert not registration.inputs.get("registries"), f"{registration.name}: an empty login was configured"
        assert registration.inputs["tags"][0].startswith("localhost:5001/mlstack-"), registration.name


def test_build_cache_lives_in_the_registry_beside_each_image() -> None:
    result, _ = build(
        AppImageArgs(registry=registry_with_credentials(), repository_prefix="mlstack", revision="r1", build_cache=True)
    )
    for target, registration in images_by_target(result).items():
        cache_ref = f"registry.example.com/ml/mlstack-{target}:buildcache"
        assert registration.inputs["cacheFrom"] == [{"registry": {"ref": cache_ref}}], registration.name
        (cache_to,) = registration.inputs["cacheTo"]
        exported = cache_to["registry"]
        assert exported["ref"] == cache_ref, registration.name
        assert exported["mode"] == "max", f"{registration.name}: intermediate stages are not cached"
        assert exported["imageManifest"] is True, registration.name
        assert exported["ociMediaTypes"] is True, registration.name
        assert exported["ignoreError"] is True, f"{registration.name}: a cache export failure would fail the deploy"


@pytest.mark.parametrize("stack", ["local", "dev", "gke"])
def test_default_build_exports_no_cache_so_a_stock_docker_engine_builds_it(run_stack: RunStack, stack: str) -> None:
    """Bug: the default build exported a registry cache, which buildx's `docker` driver refuses
    without the containerd image store ("Cache export is not supported for the docker driver")."""
    result = run_stack(stack)
    images = result.of_type(IMAGE)
    assert images, f"{stack}: no image built"
    for registration in images:
        assert not registration.inputs.get("cacheTo"), f"{stack}: {registration.name} exports a cache by default"


def test_build_cache_can_be_turned_off_and_the_platform_chosen() -> None:
    result, _ = build(
        AppImageArgs(
            registry=Registry(server="localhost:5001"),
            repository_prefix="mlstack",
            platform="linux/arm64",
            revision="r1",
        )
    )
    for registration in result.of_type(IMAGE):
        assert not registration.inputs.get("cacheFrom"), registration.name
        assert not registration.inputs.get("cacheTo"), registration.name
        assert registration.inputs["platforms"] == ["linux/arm64"], registration.name


def test_revision_defaults_to_the_source_of_the_context(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    local = Registry(server="localhost:5001")
    result, _ = build(AppImageArgs(registry=local, repository_prefix="ml", context=str(app)))
    for registration in result.of_type(IMAGE):
        assert registration.inputs["tags"][0].endswith(":" + image.content_hash(app)), registration.name
        assert registration.inputs["context"] == {"location": str(app)}, registration.name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"registry": None}, "set mlstack:localRegistry"),
        ({"platform": "linux/s390x"}, "mlstack:imagePlatform = 'linux/s390x': must be one of linux/amd64, linux/arm64"),
        ({"repository_prefix": "ML Stack"}, "mlstack:appName = 'ML Stack'"),
        ({"revision": "not a tag"}, "must be a valid image tag"),
    ],
)
def test_bad_arguments_are_refused_before_any_resource(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"registry": Registry(server="localhost:5001"), "repository_prefix": "mlstack", **changes}
    with pytest.raises(image.ImageError, match=r"cannot build the app images") as caught:
        image.check(AppImageArgs(**args))
    assert message in str(caught.value)
    if changes.get("registry", True) is None:
        assert "mlstack:trainerImage" in str(caught.value)
        assert "mlstack:serverImage" in str(caught.value)

    created: list[str] = []

    class Counting(harness.StackMocks):
        def new_resource(self, a: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            created.append(a.typ)
            return super().new_resource(a)

    with pytest.raises(Exception, match=r"cannot build the app images"):
        harness.run(lambda: AppImage("mlstack", AppImageArgs(**args)), {}, mocks=Counting())
    assert created == [], f"resources created before the arguments were checked: {created}"


# --- whole stacks: built images --------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_stack_builds_both_images_and_runs_them_by_digest(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    images = images_by_target(result)
    assert set(images) == {"trainer", "server"}, f"{stack}: {sorted(images)}"
    revision = image.source_revision(harness.ROOT / "app")
    for target, registration in images.items():
        (tag,) = registration.inputs["tags"]
        assert tag.endswith(f"/mlstack-{target}:{revision}"), f"{stack}: {registration.name} tagged {tag}"
        assert registration.outputs["ref"] == f"{tag}@{registration.outputs['digest']}", registration.name
    trainer_ref, server_ref = images["trainer"].outputs["ref"], images["server"].outputs["ref"]
    (job,) = result.of_type(JOB)
    (deployment,) = result.of_type(DEPLOYMENT)
    assert container_image(job) == trainer_ref, f"{stack}: the Job does not run the built trainer by digest"
    assert container_image(deployment) == server_ref, f"{stack}: the Deployment does not run the built server"
    assert result.exports["trainerImage"] == trainer_ref
    assert result.exports["serverImage"] == server_ref
    assert not result.secret_exports & {"trainerImage", "serverImage"}
    version_arg = job.inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    assert version_arg[version_arg.index("--version") + 1] == result.exports["modelVersion"]
    problems = schema_problems(result)
    assert problems == [], f"{stack}:\n" + "\n".join(problems)


def salted_mocks(salt: str) -> harness.StackMocks:
    """Default mocks whose builds give another digest for the same inputs: a code change the tag did not see."""
    mocks = harness.default_mocks()

    def salted(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256((salt + mocks_image.image_digest(args.inputs)).encode()).hexdigest()
        return {"digest": digest, "ref": f"{args.inputs['tags'][0]}@{digest}"}

    mocks.outputs[IMAGE] = salted
    return mocks


@pytest.mark.parametrize("stack", STACKS)
def test_model_version_follows_the_trainer_digest(run_stack: RunStack, stack: str) -> None:
    first, again = run_stack(stack), run_stack(stack)
    assert first.exports["modelVersion"] == again.exports["modelVersion"], "an unchanged up changes the model"
    assert container_image(first.one(JOB)) == container_image(again.one(JOB)), "an unchanged up replaces the Job"
    rebuilt = run_stack(stack, mocks=salted_mocks("new trainer code"))
    assert rebuilt.exports["trainerImage"] != first.exports["trainerImage"]
    assert rebuilt.exports["modelVersion"] != first.exports["modelVersion"], (
        f"{stack}: a new trainer digest must retrain (a new model version)"
    )
    retrained = run_stack(stack, overrides={"trainSeed": 7})
    assert retrained.exports["modelVersion"] != first.exports["modelVersion"], "training params left out"


# --- whole stacks: prebuilt images -----------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_prebuilt_images_create_no_image_resource(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack, overrides=PREBUILT)
    assert result.of_type(IMAGE) == [], f"{stack}: prebuilt images were built anyway"
    assert result.of_type("mlstack:image:AppImage") == []
    assert container_image(result.one(JOB)) == PREBUILT["trainerImage"]
    assert container_image(result.one(DEPLOYMENT)) == PREBUILT["serverImage"]
    assert result.exports["trainerImage"] == PREBUILT["trainerImage"]
    assert result.exports["serverImage"] == PREBUILT["serverImage"]
    problems = schema_problems(result)
    assert problems == [], f"{stack}:\n" + "\n".join(problems)


def test_local_stack_without_a_registry_runs_prebuilt_images(run_stack: RunStack) -> None:
    result = run_stack("local", overrides={**PREBUILT, "localRegistry": ""})
    assert result.of_type(IMAGE) == []
    assert container_image(result.one(JOB)) == PREBUILT["trainerImage"]


def test_local_stack_without_a_registry_or_images_fails_at_start(run_stack: RunStack) -> None:
    with pytest.raises(Exception, match=r"invalid stack configuration") as caught:
        run_stack("local", overrides={"localRegistry": ""})
    message = str(caught.value)
    for key in ("mlstack:localRegistry", "mlstack:trainerImage", "mlstack:serverImage"):
        assert key in message, f"{key} not named in: {message}"


# --- the graph stays parallel ------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_images_wait_for_the_registry_only_never_the_cluster(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    images = images_by_target(result)
    assert len(images) == 2, stack
    (component,) = result.of_type("mlstack:image:AppImage")
    assert component.parent.endswith(f"pulumi:pulumi:Stack::mlstack-{stack}"), (
        f"{stack}: AppImage is a child of {component.parent}, not of the stack"
    )
    for registration in images.values():
        for urn, path in upstream(result, registration.urn).items():
            assert not is_cluster_side(result.by_urn(urn)), f"{stack}: the image waits for the cluster: " + chain(
                result, path
            )
    # Positive control: the same walk does see the cluster behind the Job.
    job_upstream = upstream(result, result.one(JOB).urn)
    assert any(result.by_urn(u).type == "pulumi:providers:kubernetes" for u in job_upstream), stack


@pytest.mark.parametrize("stack", STACKS)
def test_job_and_deployment_wait_for_their_images(run_stack: RunStack, stack: str) -> None:
    result = run_stack(stack)
    images = images_by_target(result)
    job_upstream = upstream(result, result.one(JOB).urn)
    deployment_upstream = upstream(result, result.one(DEPLOYMENT).urn)
    assert images["trainer"].urn in job_upstream, f"{stack}: the Job does not wait for the trainer image"
    assert images["server"].urn in deployment_upstream, f"{stack}: the Deployment does not wait for the server image"
    assert images["trainer"].urn in deployment_upstream, f"{stack}: the Deployment does not wait for training"


@pytest.mark.parametrize(
    ("stack", "registry_type"),
    [("dev", "azure-native:containerregistry:Registry"), ("gke", "gcp:artifactregistry/repository:Repository")],
)
def test_cloud_images_wait_for_their_registry(run_stack: RunStack, stack: str, registry_type: str) -> None:
    result = run_stack(stack)
    registry = result.one(registry_type)
    for registration in result.of_type(IMAGE):
        assert registry.urn in upstream(result, registration.urn), (
            f"{stack}: {registration.name} could push before {registry.name} exists"
        )
