"""AppImage under mocks: the trainer from its own context and the server from app/, each unless prebuilt,
pushed, tagged by its own context's revision, run by digest.

The revision and the argument check alone: tests/pure/test_image.py; images in
whole stacks (wired into the pods, built in parallel with the cluster):
tests/stacks/test_image.py.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import image
from components.image import AppImage, AppImageArgs
from components.target import Registry
from tests import dockerfiles
from tests.args import IMAGE_BAD_ARGUMENTS, write_app, write_trainer
from tests.support import IMAGE, CountingMocks
from tools import harness

SECRET_PASSWORD = "registry-push-token-0123456789"


def build(args: AppImageArgs) -> tuple[harness.StackRun, dict[str, Any]]:
    def program() -> None:
        built = AppImage("mlstack", args)
        for role, ref in (("trainer", built.trainer_ref), ("server", built.server_ref)):
            if ref is not None:
                pulumi.export(role, ref)

    result = harness.run(program, {})
    return result, result.exports


def images_by_role(result: harness.StackRun) -> dict[str, harness.Registration]:
    """The built images by role, from their names (<name>-trainer, <name>-server: part of their URNs)."""
    return {r.name.rsplit("-", 1)[1]: r for r in result.of_type(IMAGE)}


def registry_with_credentials() -> Registry:
    return Registry(server="registry.example.com/ml", username="pusher", password=pulumi.Output.secret(SECRET_PASSWORD))


def test_the_trainer_is_built_from_its_context_and_the_server_from_app() -> None:
    result, exports = build(
        AppImageArgs(
            registry=registry_with_credentials(), repository_prefix="mlstack", trainer_context="examples/iris-forest",
            trainer_revision="fedcba987654", server_revision="0123456789ab",
        )
    )  # fmt: skip
    images = images_by_role(result)
    assert set(images) == {"trainer", "server"}
    (component,) = result.of_type("mlstack:image:AppImage")
    assert component.name == "mlstack"
    assert {r.name for r in images.values()} == {"mlstack-trainer", "mlstack-server"}, "the children's URNs moved"
    built_from = {
        "trainer": ("examples/iris-forest", "fedcba987654", None),
        "server": ("app", "0123456789ab", image.SERVER_TARGET),
    }
    for role, registration in images.items():
        inputs = registration.inputs
        context, revision, target = built_from[role]
        where = f"{registration.name} ({role})"
        assert registration.parent == component.urn, f"{where}: not a child of AppImage"
        assert inputs["push"] is True, where
        assert inputs["platforms"] == ["linux/amd64"], where
        assert inputs["context"] == {"location": context}, where
        assert inputs["dockerfile"] == {"location": f"{context}/Dockerfile"}, where
        assert inputs.get("target") == target, f"{where}: the trainer's Dockerfile is built as it stands"
        repository = f"registry.example.com/ml/mlstack-{role}"
        assert inputs["tags"] == [f"{repository}:{revision}"], where
        ref = exports[role]
        assert ref == f"{repository}:{revision}@{registration.outputs['digest']}", f"{where}: ref {ref}"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", ref.split("@")[1]), ref
    assert exports["trainer"] != exports["server"]
    assert images["trainer"].inputs["buildArgs"] == {image.TORCH_INDEX_ARG: AppImageArgs.torch_index_url}
    assert not images["server"].inputs.get("buildArgs"), "the server image has no torch"


@pytest.mark.parametrize(("prebuilt", "built"), [("trainer", "server"), ("server", "trainer")])
def test_a_prebuilt_image_is_not_built_and_the_other_is(prebuilt: str, built: str) -> None:
    args = AppImageArgs(
        registry=registry_with_credentials(), repository_prefix="mlstack", trainer_revision="t1", server_revision="s1"
    )
    if prebuilt == "trainer":
        args = dataclasses.replace(args, trainer_context=None)
    else:
        args = dataclasses.replace(args, server_context=None)
    result, exports = build(args)
    assert set(images_by_role(result)) == {built}
    assert set(exports) == {built}, f"the prebuilt {prebuilt} has no ref here"


def test_registry_credentials_reach_the_build_with_the_password_secret() -> None:
    result, _ = build(
        AppImageArgs(
            registry=registry_with_credentials(),
            repository_prefix="mlstack",
            trainer_revision="r1",
            server_revision="r1",
        )
    )
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
    result, _ = build(
        AppImageArgs(registry=local, repository_prefix="mlstack", trainer_revision="r1", server_revision="r1")
    )
    for registration in result.of_type(IMAGE):
        assert not registration.inputs.get("registries"), f"{registration.name}: an empty login was configured"
        assert registration.inputs["tags"][0].startswith("localhost:5001/mlstack-"), registration.name


def test_build_cache_lives_in_the_registry_beside_each_image() -> None:
    result, _ = build(
        AppImageArgs(
            registry=registry_with_credentials(),
            repository_prefix="mlstack",
            trainer_revision="r1",
            server_revision="r1",
            build_cache=True,
        )
    )
    for role, registration in images_by_role(result).items():
        cache_ref = f"registry.example.com/ml/mlstack-{role}:buildcache"
        assert registration.inputs["cacheFrom"] == [{"registry": {"ref": cache_ref}}], registration.name
        (cache_to,) = registration.inputs["cacheTo"]
        exported = cache_to["registry"]
        assert exported["ref"] == cache_ref, registration.name
        assert exported["mode"] == "max", f"{registration.name}: intermediate stages are not cached"
        assert exported["imageManifest"] is True, registration.name
        assert exported["ociMediaTypes"] is True, registration.name
        assert exported["ignoreError"] is True, f"{registration.name}: a cache export failure would fail the deploy"


def test_build_cache_can_be_turned_off_and_the_platform_chosen() -> None:
    result, _ = build(
        AppImageArgs(
            registry=Registry(server="localhost:5001"),
            repository_prefix="mlstack",
            platform="linux/arm64",
            trainer_revision="r1",
            server_revision="r1",
        )
    )
    for registration in result.of_type(IMAGE):
        assert not registration.inputs.get("cacheFrom"), registration.name
        assert not registration.inputs.get("cacheTo"), registration.name
        assert registration.inputs["platforms"] == ["linux/arm64"], registration.name


def test_no_platform_leaves_it_to_the_builder() -> None:
    """platform=None passes no platforms input: pulumi-docker-build then builds for the builder's own."""
    result, exports = build(AppImageArgs(registry=Registry(server="localhost:5001"), repository_prefix="mlstack",
                                         platform=None, trainer_revision="r1", server_revision="r1"))  # fmt: skip
    images = images_by_role(result)
    assert set(images) == {"trainer", "server"}
    for role, registration in images.items():
        assert "platforms" not in registration.inputs, f"{registration.name}: {registration.inputs.get('platforms')}"
        assert exports[role] == registration.outputs["ref"], registration.name


def test_each_revision_defaults_to_the_source_of_its_own_context(tmp_path: Path) -> None:
    app, trainer = write_app(tmp_path), write_trainer(tmp_path)
    local = Registry(server="localhost:5001")

    def tags() -> dict[str, str]:
        result, _ = build(
            AppImageArgs(registry=local, repository_prefix="ml", trainer_context=str(trainer), server_context=str(app))
        )
        images = images_by_role(result)
        assert images["trainer"].inputs["context"] == {"location": str(trainer)}
        assert images["server"].inputs["context"] == {"location": str(app)}
        return {role: registration.inputs["tags"][0].rsplit(":", 1)[1] for role, registration in images.items()}

    first = tags()
    assert first == {"trainer": image.content_hash(trainer), "server": image.content_hash(app)}
    (trainer / "train.py").write_text("print('trained')\n", encoding="utf-8")
    second = tags()
    assert second["trainer"] == image.content_hash(trainer) != first["trainer"], "the trainer's edit missed its tag"
    assert second["server"] == first["server"], "a trainer's edit changed the server's tag, and rebuilt it"


@pytest.mark.parametrize(("changes", "message"), IMAGE_BAD_ARGUMENTS)
def test_bad_arguments_are_refused_before_any_resource(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"registry": Registry(server="localhost:5001"), "repository_prefix": "mlstack", **changes}
    mocks = CountingMocks()
    with pytest.raises(image.ImageError, match=r"cannot build the app images") as caught:
        harness.run(lambda: AppImage("mlstack", AppImageArgs(**args)), {}, mocks=mocks)
    assert message in str(caught.value)
    assert mocks.created == [], f"resources created before the arguments were checked: {mocks.created}"


# --- the server's GPU variant (mlstack:serverGpu) ---------------------------------


def test_the_gpu_server_installs_the_gpu_requirements_under_its_own_tag_and_cache() -> None:
    """The same revision builds two different servers: the GPU one may never take the CPU one's tag or cache."""
    args = AppImageArgs(registry=registry_with_credentials(), repository_prefix="mlstack", trainer_revision="t1",
                        server_revision="s1", build_cache=True, server_gpu=True)  # fmt: skip

    def program() -> None:
        built = AppImage("mlstack", args)
        pulumi.export("server", built.server_ref)
        pulumi.export("serverRevision", built.server_revision)

    result = harness.run(program, {})
    exports = result.exports
    images = images_by_role(result)
    server, trainer = images["server"].inputs, images["trainer"].inputs
    assert server["buildArgs"] == {image.SERVER_REQUIREMENTS_ARG: image.SERVER_GPU_REQUIREMENTS}
    assert server.get("target") == image.SERVER_TARGET, "the GPU variant is the same stage, other requirements"
    repository = "registry.example.com/ml/mlstack-server"
    assert server["tags"] == [f"{repository}:s1-gpu"]
    assert exports["server"].startswith(f"{repository}:s1-gpu@sha256:"), exports["server"]
    assert server["cacheFrom"] == [{"registry": {"ref": f"{repository}:buildcache-gpu"}}]
    assert server["cacheTo"][0]["registry"]["ref"] == f"{repository}:buildcache-gpu"
    assert exports["serverRevision"] == "s1-gpu", "the revision the stack reports is the tag it runs"
    # The trainer is untouched by the server's variant.
    assert trainer["tags"] == ["registry.example.com/ml/mlstack-trainer:t1"]
    assert trainer["buildArgs"] == {image.TORCH_INDEX_ARG: AppImageArgs.torch_index_url}


def test_the_cpu_server_keeps_its_tag_cache_and_the_dockerfiles_default() -> None:
    result, _ = build(AppImageArgs(registry=registry_with_credentials(), repository_prefix="mlstack",
                                   trainer_revision="t1", server_revision="s1", build_cache=True))  # fmt: skip
    server = images_by_role(result)["server"].inputs
    assert not server.get("buildArgs"), "the CPU server takes app/Dockerfile's default requirements"
    assert server["tags"] == ["registry.example.com/ml/mlstack-server:s1"]
    assert server["cacheFrom"] == [{"registry": {"ref": "registry.example.com/ml/mlstack-server:buildcache"}}]


def test_the_build_argument_is_one_app_dockerfile_reads_and_both_files_exist() -> None:
    """The component passes SERVER_REQUIREMENTS; a name the Dockerfile did not declare would only warn
    (Dockerfile reference, ARG) and build the CPU image under the GPU tag."""
    dockerfile = harness.ROOT / image.APP_CONTEXT / image.DOCKERFILE
    declared = dockerfiles.arg_defaults(dockerfile, "server-deps")
    assert declared == {image.SERVER_REQUIREMENTS_ARG: "requirements-server.txt"}, declared
    deps = dockerfiles.stages(dockerfile)["server-deps"]
    assert f"COPY ${{{image.SERVER_REQUIREMENTS_ARG}}} /tmp/requirements-server.txt" in deps, deps
    assert any("-r /tmp/requirements-server.txt" in line for line in deps), deps
    for name in ("requirements-server.txt", image.SERVER_GPU_REQUIREMENTS):
        assert (harness.ROOT / image.APP_CONTEXT / name).is_file(), name


@pytest.mark.parametrize(("platform", "refused"), [("linux/arm64", True), ("linux/amd64", False), (None, False)])
def test_the_gpu_server_is_built_for_x86_64_alone(platform: str | None, refused: bool) -> None:
    """onnxruntime-gpu 1.31.1 has no aarch64 wheel: an arm64 GPU image would fail in pip, minutes into the build."""
    args = AppImageArgs(registry=Registry(server="localhost:5001"), repository_prefix="mlstack", platform=platform,
                        trainer_revision="t1", server_revision="s1", server_gpu=True)  # fmt: skip
    mocks = CountingMocks()
    if not refused:
        harness.run(lambda: AppImage("mlstack", args), {}, mocks=mocks)
        assert mocks.created, "nothing was built"
        return
    with pytest.raises(image.ImageError, match=r"mlstack:imagePlatform = 'linux/arm64': the server's GPU image"):
        harness.run(lambda: AppImage("mlstack", args), {}, mocks=mocks)
    assert mocks.created == []
    # A prebuilt server is not built here, so the platform is no concern of its variant.
    harness.run(lambda: AppImage("mlstack", dataclasses.replace(args, server_context=None)), {}, mocks=CountingMocks())


def test_the_gpu_suffix_counts_against_the_tag_length() -> None:
    revision = "r" * 126
    assert image.server_tag(revision, gpu=False) == revision
    with pytest.raises(image.ImageError, match="must be a valid image tag"):
        harness.run(
            lambda: AppImage("mlstack", AppImageArgs(registry=Registry(server="localhost:5001"),
                                                     repository_prefix="mlstack", server_revision=revision,
                                                     trainer_revision="t1", server_gpu=True)),
            {},
            mocks=CountingMocks(),
        )  # fmt: skip
