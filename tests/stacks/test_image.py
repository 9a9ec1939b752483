"""The app images in whole stacks: built and run by digest, or prebuilt; built in parallel with the cluster.

The component alone: tests/components/test_image.py; the revision: tests/pure/test_image.py.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from components import image
from mlapp import contract
from mlstack import specs
from tests.support import (
    DEPLOYMENT,
    IMAGE,
    JOB,
    PUBLISH,
    STACKS,
    TRAIN,
    RunStack,
    SharedRun,
    StackProblems,
    container,
)
from tools import harness, mocks_image

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


def images_by_target(result: harness.StackRun) -> dict[str, harness.Registration]:
    """The built images by role, from their names (<app>-trainer, <app>-server: part of their URNs)."""
    return {r.name.rsplit("-", 1)[1]: r for r in result.of_type(IMAGE)}


# --- built images --------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_default_build_exports_no_cache_so_a_stock_docker_engine_builds_it(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    """Bug: the default build exported a registry cache, which buildx's `docker` driver refuses
    without the containerd image store ("Cache export is not supported for the docker driver")."""
    images = shipped[stack].of_type(IMAGE)
    assert images, f"{stack}: no image built"
    for registration in images:
        assert not registration.inputs.get("cacheTo"), f"{stack}: {registration.name} exports a cache by default"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_builds_both_images_and_runs_them_by_digest(shipped: dict[str, harness.StackRun], stack: str) -> None:
    """The digits example's trainer from examples/digits, the server from app/, each tagged by its own source."""
    result = shipped[stack]
    images = images_by_target(result)
    assert set(images) == {"trainer", "server"}, f"{stack}: {sorted(images)}"
    sources = {"trainer": specs.DIGITS_CONTEXT, "server": image.APP_CONTEXT}
    for role, registration in images.items():
        (tag,) = registration.inputs["tags"]
        revision = image.source_revision(harness.ROOT / sources[role])
        assert tag.endswith(f"/mlstack-{role}:{revision}"), f"{stack}: {registration.name} tagged {tag}"
        assert registration.inputs["context"] == {"location": sources[role]}, registration.name
        assert registration.inputs["dockerfile"] == {"location": f"{sources[role]}/Dockerfile"}, registration.name
        assert registration.outputs["ref"] == f"{tag}@{registration.outputs['digest']}", registration.name
    assert "target" not in images["trainer"].inputs, "the team's Dockerfile is built as it stands"
    assert images["server"].inputs["target"] == image.SERVER_TARGET
    trainer_ref, server_ref = images["trainer"].outputs["ref"], images["server"].outputs["ref"]
    job, publish = result.one(JOB, TRAIN), result.one(JOB, PUBLISH)
    (deployment,) = result.of_type(DEPLOYMENT)
    assert container_image(job) == trainer_ref, f"{stack}: the Job does not run the built trainer by digest"
    assert container_image(publish) == server_ref, f"{stack}: the publisher is the server image's"
    assert container_image(deployment) == server_ref, f"{stack}: the Deployment does not run the built server"
    assert result.exports["trainerImage"] == trainer_ref
    assert result.exports["serverImage"] == server_ref
    assert not result.secret_exports & {"trainerImage", "serverImage"}
    env = {v["name"]: v.get("value") for v in container(job)["env"]}
    assert env[contract.ENV_MODEL_VERSION] == result.exports["modelVersion"]
    assert env[contract.ENV_TRAINER_IMAGE] == trainer_ref


# --- the platform the images are built for ----------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "overrides", "platforms"),
    [("local", {"imagePlatform": "linux/arm64"}, ["linux/arm64"]),
     ("local", {"imagePlatform": "linux/amd64"}, ["linux/amd64"]),
     ("dev", {}, ["linux/amd64"]), ("gke", {}, ["linux/amd64"]),
     ("gke", {"imagePlatform": "linux/amd64"}, ["linux/amd64"])],
)  # fmt: skip
def test_images_are_built_for_the_configured_platform_else_amd64_on_a_cloud(
    shared_run: SharedRun, stack: str, overrides: dict[str, Any], platforms: list[str]
) -> None:
    """A set mlstack:imagePlatform is built on every target; unset, a cloud's GPU pools are amd64 (an arm64
    one is refused there: tests/stacks/test_config_mistakes.py)."""
    images = images_by_target(shared_run(stack, overrides=overrides))
    assert set(images) == {"trainer", "server"}, f"{stack}: {sorted(images)}"
    for role, registration in images.items():
        assert registration.inputs.get("platforms") == platforms, f"{stack} {overrides}: the {role} image"


def test_local_images_are_built_for_the_docker_engines_own_platform(shipped: dict[str, harness.StackRun]) -> None:
    """An arm64 laptop running kind needs no config change. With no platforms input the
    provider passes no --platform, and BuildKit builds for the platform it runs on, kind's nodes' own."""
    images = images_by_target(shipped["local"])
    assert set(images) == {"trainer", "server"}
    for role, registration in images.items():
        assert "platforms" not in registration.inputs, f"local: the {role} image names a platform"


def salted_mocks(salt: str) -> harness.StackMocks:
    """Default mocks whose builds give another digest for the same inputs: a code change the tag did not see."""
    mocks = harness.default_mocks()

    def salted(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256((salt + mocks_image.image_digest(args.inputs)).encode()).hexdigest()
        return {"digest": digest, "ref": f"{args.inputs['tags'][0]}@{digest}"}

    mocks.outputs[IMAGE] = salted
    return mocks


@pytest.mark.parametrize("stack", STACKS)
def test_model_version_follows_the_trainer_digest(
    shipped: dict[str, harness.StackRun], shared_run: SharedRun, run_stack: RunStack, stack: str
) -> None:
    first, again = shipped[stack], run_stack(stack)  # a second, fresh run of the same stack
    assert first.exports["modelVersion"] == again.exports["modelVersion"], "an unchanged up changes the model"
    assert container_image(first.one(JOB, TRAIN)) == container_image(again.one(JOB, TRAIN)), (
        "an unchanged up replaces the Job"
    )
    rebuilt = run_stack(stack, mocks=salted_mocks("new trainer code"))
    assert rebuilt.exports["trainerImage"] != first.exports["trainerImage"]
    assert rebuilt.exports["modelVersion"] != first.exports["modelVersion"], (
        f"{stack}: a new trainer digest must retrain (a new model version)"
    )
    retrained = shared_run(stack, overrides={"trainSeed": 7})
    assert retrained.exports["modelVersion"] != first.exports["modelVersion"], "training params left out"
    commanded = shared_run(stack, overrides={"trainerCommand": ["python", "-m", "digits"]})
    assert commanded.exports["modelVersion"] != first.exports["modelVersion"], "the command left out"


# --- prebuilt images -------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_prebuilt_images_create_no_image_resource(shared_run: SharedRun, stack: str) -> None:
    result = shared_run(stack, overrides=PREBUILT)
    assert result.of_type(IMAGE) == [], f"{stack}: prebuilt images were built anyway"
    assert result.of_type("mlstack:image:AppImage") == []
    assert container_image(result.one(JOB, TRAIN)) == PREBUILT["trainerImage"]
    assert container_image(result.one(JOB, PUBLISH)) == PREBUILT["serverImage"]
    assert container_image(result.one(DEPLOYMENT)) == PREBUILT["serverImage"]
    assert result.exports["trainerImage"] == PREBUILT["trainerImage"]
    assert result.exports["serverImage"] == PREBUILT["serverImage"]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("prebuilt", "built"), [("trainer", "server"), ("server", "trainer")])
def test_either_image_may_be_prebuilt_while_the_other_is_built(
    shared_run: SharedRun, stack: str, prebuilt: str, built: str
) -> None:
    """The trainer and the server share no source: one prebuilt does not make the other."""
    key = f"{prebuilt}Image"
    result = shared_run(stack, overrides={key: PREBUILT[key]})
    images = images_by_target(result)
    assert set(images) == {built}, f"{stack}: built {sorted(images)}"
    assert result.exports[key] == PREBUILT[key]
    assert result.exports[f"{built}Image"] == images[built].outputs["ref"]
    (trainer, publish, deployment) = (result.one(JOB, TRAIN), result.one(JOB, PUBLISH), result.one(DEPLOYMENT))
    assert container_image(trainer) == result.exports["trainerImage"]
    assert container_image(publish) == container_image(deployment) == result.exports["serverImage"]


def test_a_trainer_context_beside_a_prebuilt_trainer_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("gke", trainerImage=PREBUILT["trainerImage"], trainerContext="examples/digits")
    assert problem.startswith("mlstack:trainerContext = 'examples/digits': must be empty when mlstack:trainerImage")


@pytest.mark.parametrize(
    ("context", "reason"),
    [("/opt/trainer", "must be a directory relative to the project"),
     ("../elsewhere", "must stay inside the project: no '..'"),
     ("examples/no-such-trainer", "names no directory of the project"), ("docs", "must hold a Dockerfile")],
)  # fmt: skip
def test_a_trainer_context_that_cannot_be_built_is_refused(
    stack_problems: StackProblems, context: str, reason: str
) -> None:
    (problem,) = stack_problems("local", trainerContext=context)
    assert problem.startswith(f"mlstack:trainerContext = {context!r}: {reason}"), problem


def test_local_stack_without_a_registry_runs_prebuilt_images(shared_run: SharedRun) -> None:
    result = shared_run("local", overrides={**PREBUILT, "localRegistry": ""})
    assert result.of_type(IMAGE) == []
    assert container_image(result.one(JOB, TRAIN)) == PREBUILT["trainerImage"]


def test_local_stack_without_a_registry_or_images_fails_at_start(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("local", localRegistry="")
    for key in ("mlstack:localRegistry", "mlstack:trainerImage", "mlstack:serverImage"):
        assert key in problem, f"{key} not named in: {problem}"
    (problem,) = stack_problems("local", localRegistry="", serverImage=PREBUILT["serverImage"])
    assert problem == (
        "mlstack:localRegistry = '': the trainer image is built and needs a registry to push to: set "
        "mlstack:localRegistry (kind's local registry is localhost:5001), or set mlstack:trainerImage to a prebuilt "
        "image"
    )


# --- the graph stays parallel ------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_images_wait_for_the_registry_only_never_the_cluster(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
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
    job_upstream = upstream(result, result.one(JOB, TRAIN).urn)
    assert any(result.by_urn(u).type == "pulumi:providers:kubernetes" for u in job_upstream), stack


@pytest.mark.parametrize("stack", STACKS)
def test_job_and_deployment_wait_for_their_images(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    images = images_by_target(result)
    job_upstream = upstream(result, result.one(JOB, TRAIN).urn)
    deployment_upstream = upstream(result, result.one(DEPLOYMENT).urn)
    assert images["trainer"].urn in job_upstream, f"{stack}: the Job does not wait for the trainer image"
    publish_upstream = upstream(result, result.one(JOB, PUBLISH).urn)
    assert images["server"].urn in publish_upstream, f"{stack}: the publisher runs the server image"
    assert result.one(JOB, TRAIN).urn in publish_upstream, f"{stack}: the publisher does not wait for training"
    assert images["server"].urn in deployment_upstream, f"{stack}: the Deployment does not wait for the server image"
    assert images["trainer"].urn in deployment_upstream, f"{stack}: the Deployment does not wait for training"


@pytest.mark.parametrize(
    ("stack", "registry_type"),
    [("dev", "azure-native:containerregistry:Registry"), ("gke", "gcp:artifactregistry/repository:Repository")],
)
def test_cloud_images_wait_for_their_registry(
    shipped: dict[str, harness.StackRun], stack: str, registry_type: str
) -> None:
    result = shipped[stack]
    registry = result.one(registry_type)
    for registration in result.of_type(IMAGE):
        assert registry.urn in upstream(result, registration.urn), (
            f"{stack}: {registration.name} could push before {registry.name} exists"
        )
