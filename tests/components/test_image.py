"""AppImage under mocks: both targets built and pushed, tagged by revision, run by digest.

The revision and the argument check alone: tests/pure/test_image.py; images in
whole stacks (wired into the pods, built in parallel with the cluster):
tests/stacks/test_image.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import image
from components.image import AppImage, AppImageArgs
from components.target import Registry
from tests.args import IMAGE_BAD_ARGUMENTS, write_app
from tests.support import IMAGE, CountingMocks
from tools import harness

SECRET_PASSWORD = "registry-push-token-0123456789"


def build(args: AppImageArgs) -> tuple[harness.StackRun, dict[str, Any]]:
    def program() -> None:
        built = AppImage("mlstack", args)
        pulumi.export("trainer", built.trainer_ref)
        pulumi.export("server", built.server_ref)

    result = harness.run(program, {})
    return result, result.exports


def images_by_target(result: harness.StackRun) -> dict[str, harness.Registration]:
    return {r.inputs["target"]: r for r in result.of_type(IMAGE)}


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
    assert images["trainer"].inputs["buildArgs"] == {image.TORCH_INDEX_ARG: AppImageArgs.torch_index_url}
    assert not images["server"].inputs.get("buildArgs"), "the server image has no torch"


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


def test_no_platform_leaves_it_to_the_builder() -> None:
    """platform=None passes no platforms input: pulumi-docker-build then builds for the builder's own."""
    result, exports = build(AppImageArgs(registry=Registry(server="localhost:5001"), repository_prefix="mlstack",
                                         platform=None, revision="r1"))  # fmt: skip
    images = images_by_target(result)
    assert set(images) == {"trainer", "server"}
    for target, registration in images.items():
        assert "platforms" not in registration.inputs, f"{registration.name}: {registration.inputs.get('platforms')}"
        assert exports[target] == registration.outputs["ref"], registration.name


def test_revision_defaults_to_the_source_of_the_context(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    local = Registry(server="localhost:5001")
    result, _ = build(AppImageArgs(registry=local, repository_prefix="ml", context=str(app)))
    for registration in result.of_type(IMAGE):
        assert registration.inputs["tags"][0].endswith(":" + image.content_hash(app)), registration.name
        assert registration.inputs["context"] == {"location": str(app)}, registration.name


@pytest.mark.parametrize(("changes", "message"), IMAGE_BAD_ARGUMENTS)
def test_bad_arguments_are_refused_before_any_resource(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"registry": Registry(server="localhost:5001"), "repository_prefix": "mlstack", **changes}
    mocks = CountingMocks()
    with pytest.raises(image.ImageError, match=r"cannot build the app images") as caught:
        harness.run(lambda: AppImage("mlstack", AppImageArgs(**args)), {}, mocks=mocks)
    assert message in str(caught.value)
    assert mocks.created == [], f"resources created before the arguments were checked: {mocks.created}"
