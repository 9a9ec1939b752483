"""AppImage: the trainer and server images, built and pushed, pinned by digest.

The server is the ``server`` target of ``app/Dockerfile``; the trainer is the team's own, the
Dockerfile at the root of its build context (mlstack:trainerContext; the digits example by
default), built as it stands, with no target. Either may be prebuilt instead, and is then not
built here. Both are built with pulumi-docker-build (BuildKit) and pushed to the cluster target's
registry. What the pods run is the ``ref`` output,
``<registry>/<repository>:<revision>@sha256:<digest>``: a digest never moves, so the training Job,
the model version, the publish Job and the serving Deployment all name exactly the bytes that were
built.

The images depend on the registry (and its credentials) only, never on the
cluster, so they build while the cluster is being created.

Each image's source revision (its tag) is pure data computed here, from its own context: the git
commit that last touched the directory when it is clean, otherwise a hash of its files, so an
unchanged tree gives an unchanged tag and an unchanged ``pulumi up``, and a change to one image's
source leaves the other's tag alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pulumi
import pulumi_docker_build as docker_build

from components.target import Registry
from mlstack import catalogue, rules
from mlstack.problems import Problem, format_problems
from mlstack.specs import DIGITS_CONTEXT

# Where the app lives, relative to the project root (the directory `pulumi up` runs in).
# Relative on purpose: the paths are resource inputs, and an absolute path would
# show as a change whenever the stack is deployed from another checkout.
APP_CONTEXT: Final = "app"
DOCKERFILE: Final = "Dockerfile"  # at the root of each build context
# The images' roles: each names its repository (<prefix>-<role>) and its child resource (<name>-<role>),
# both permanent once deployed (a child's name is in its URN).
TRAINER: Final = "trainer"
SERVER: Final = "server"
SERVER_TARGET: Final = "server"  # the stage of app/Dockerfile the server is
CACHE_TAG: Final = "buildcache"
# PyTorch's wheel index for the trainerCuda build, passed to every trainer build: a trainer's Dockerfile
# declares `ARG TORCH_INDEX_URL` to use it, or ignores it (docs/trainer-contract.md, "Mounts and the
# container"). A build argument the Dockerfile does not declare is not used: "If a user specifies a build
# argument that was not defined in the Dockerfile, the build outputs a warning" (Dockerfile reference,
# ARG: https://docs.docker.com/reference/dockerfile/#arg).
TORCH_INDEX_ARG: Final = "TORCH_INDEX_URL"
# The server's GPU variant (mlstack:serverGpu): app/Dockerfile's server-deps stage installs the requirements file
# this build argument names (its default, requirements-server.txt, is the CPU image), and the GPU variant's is
# onnxruntime-gpu with the NVIDIA CUDA 13 and cuDNN 9 wheels. Built from the same revision it is other bytes
# (two gigabytes of CUDA), so its tag and its build cache carry a suffix: one tag never names both variants.
SERVER_REQUIREMENTS_ARG: Final = "SERVER_REQUIREMENTS"
SERVER_GPU_REQUIREMENTS: Final = "requirements-server-gpu.txt"
GPU_SUFFIX: Final = "-gpu"
GIT_REVISION_LENGTH: Final = 12
CONTENT_PREFIX: Final = "src-"
CONTENT_HASH_LENGTH: Final = 16
# Local tool caches, never part of what the image is built from.
IGNORED_DIRS: Final = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv"})


class ImageError(pulumi.RunError):
    """The images cannot be built with these arguments."""


@dataclass(frozen=True)
class AppImageArgs:
    registry: Registry | None  # the cluster target's; None cannot push, so it is refused
    repository_prefix: str  # repositories are <prefix>-trainer and <prefix>-server
    # One of catalogue.IMAGE_PLATFORMS, or None for the builder's own platform: pulumi-docker-build
    # passes no --platform then, and BuildKit builds for the platform it runs on ("Set target
    # platform(s) for the build. Defaults to the host's platform.": pulumi/pulumi-docker-build,
    # provider/internal/image.go, the `platforms` input; provider/internal/client.go hands the
    # empty list to buildx as is).
    platform: str | None = catalogue.CLOUD_IMAGE_PLATFORM
    # A registry-backed BuildKit cache beside each repository. Off by default: the
    # `docker` driver of a stock Docker Engine refuses any cache export but inline
    # unless the containerd image store is on ("Cache export is not supported for
    # the docker driver"; docker/buildx#701, docs.docker.com/build/cache/backends/).
    build_cache: bool = False
    # PyTorch's wheel index for the trainer's torch build, CUDA or CPU-only (mlstack.catalogue.TRAINER_BUILDS).
    torch_index_url: str = catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA].index_url
    # The build contexts, relative to the project; None: that image is prebuilt, not built here.
    trainer_context: str | None = DIGITS_CONTEXT
    server_context: str | None = APP_CONTEXT
    # The tags; None: source_revision() of the image's own context.
    trainer_revision: str | None = None
    server_revision: str | None = None
    # The server's GPU variant, whose ONNX Runtime runs the model on CUDA (mlstack:serverGpu); linux/amd64 only.
    server_gpu: bool = False


# --- pure helpers ------------------------------------------------------------


def _files(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for file in sorted(files):
            path = Path(root) / file
            if path.is_file() and not file.endswith(".pyc"):
                yield path


def content_hash(directory: Path) -> str:
    """A revision from the files under ``directory``: their relative paths, executable bits and bytes.

    A missing directory hashes as an empty one (the build then fails on its own
    terms, with the missing Dockerfile named by BuildKit).
    """
    digest = hashlib.sha256()
    if directory.is_dir():
        for path in _files(directory):
            relative = path.relative_to(directory).as_posix()
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            data = path.read_bytes()
            # Length-prefixed fields: no two different trees can produce the same stream.
            header = f"{len(relative)}:{relative}:{int(executable)}:{len(data)}:"
            digest.update(header.encode())
            digest.update(data)
    return CONTENT_PREFIX + digest.hexdigest()[:CONTENT_HASH_LENGTH]


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
            ["git", "-C", str(directory), *args],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(directory: Path) -> str | None:
    """The last commit that touched ``directory`` when it is clean in git, else None.

    The commit that touched the directory, not HEAD: a commit elsewhere in the
    repository (docs, infrastructure) leaves the tag, and so the image, alone.
    Untracked files count as changes: they end up in the build context.
    """
    if not directory.is_dir():
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=all", "--", ".")
    if status is None or status:
        return None
    commit = _git(directory, "log", "-1", "--format=%H", "--", ".")
    return commit[:GIT_REVISION_LENGTH] if commit else None


def source_revision(directory: Path) -> str:
    """The image tag for the source in ``directory``: its git commit when clean, else a content hash."""
    return git_revision(directory) or content_hash(directory)


def registry_host(server: str) -> str:
    """The host of a registry server (Artifact Registry's server carries a repository path)."""
    return server.split("/", 1)[0]


def dockerfile(context: str) -> str:
    """The Dockerfile an image is built from: the one at the root of its context."""
    return f"{context}/{DOCKERFILE}"


def server_tag(revision: str, gpu: bool) -> str:
    """The server image's tag: its revision, with GPU_SUFFIX for the GPU variant."""
    return revision + GPU_SUFFIX if gpu else revision


def check(args: AppImageArgs) -> Registry:
    """Refuse what cannot be built, before any resource exists; the registry to push to."""
    problems: list[Problem | str] = [*rules.image_repository_prefix(args.repository_prefix)]
    if args.platform is not None:
        problems += rules.one_of("imagePlatform", args.platform, catalogue.IMAGE_PLATFORMS)
    if args.trainer_context is None and args.server_context is None:
        problems.append("both images are prebuilt: there is nothing to build")
    if args.registry is None:
        problems.insert(
            0,
            "images are built and pushed, but this cluster target has no registry: "
            "set mlstack:localRegistry (kind's local registry is localhost:5001), or set "
            "mlstack:trainerImage and mlstack:serverImage to prebuilt images",
        )
    if args.server_gpu and args.server_context is not None:
        problems += rules.server_gpu_image_platform(args.platform)
    if not args.torch_index_url.startswith("https://"):
        problems.append(f"trainer torch index {args.torch_index_url!r}: must be an https:// wheel index")
    server_revision = None if args.server_revision is None else server_tag(args.server_revision, args.server_gpu)
    for revision in (args.trainer_revision, server_revision):
        if revision is not None and not re.fullmatch(r"[\w][\w.-]{0,127}", revision):
            problems.append(f"image revision {revision!r}: must be a valid image tag")
    if problems or args.registry is None:
        raise ImageError(format_problems("cannot build the app images", problems))
    return args.registry


# --- the component -----------------------------------------------------------


class AppImage(pulumi.ComponentResource):
    """The trainer image from its own context and the server image from app/, each unless prebuilt, pushed
    to the target's registry."""

    trainer_ref: pulumi.Output[str] | None  # None: the trainer is prebuilt
    server_ref: pulumi.Output[str] | None  # None: the server is prebuilt
    trainer_revision: str | None
    server_revision: str | None

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        registry = check(args)
        super().__init__("mlstack:image:AppImage", name, None, opts)
        self._name, self._args = name, args
        self._server = pulumi.Output.from_input(registry.server)
        self._registries = self._logins(registry)

        self.trainer_ref, self.trainer_revision = None, None
        if args.trainer_context is not None:
            self.trainer_revision = args.trainer_revision or source_revision(Path(args.trainer_context))
            # Built as the team's Dockerfile stands (no target), with the torch build the config chose.
            trainer = self._image(
                TRAINER, args.trainer_context, None, self.trainer_revision, {TORCH_INDEX_ARG: args.torch_index_url}
            )
            self.trainer_ref = trainer.ref
        self.server_ref, self.server_revision = None, None
        if args.server_context is not None:
            revision = args.server_revision or source_revision(Path(args.server_context))
            self.server_revision = server_tag(revision, args.server_gpu)
            build_args = {SERVER_REQUIREMENTS_ARG: SERVER_GPU_REQUIREMENTS} if args.server_gpu else None
            cache = CACHE_TAG + GPU_SUFFIX if args.server_gpu else CACHE_TAG
            server = self._image(
                SERVER, args.server_context, SERVER_TARGET, self.server_revision, build_args, cache_tag=cache
            )
            self.server_ref = server.ref
        outputs: dict[str, pulumi.Input[str]] = {}
        for key, value in (
            ("trainerRef", self.trainer_ref),
            ("trainerRevision", self.trainer_revision),
            ("serverRef", self.server_ref),
            ("serverRevision", self.server_revision),
        ):
            if value is not None:
                outputs[key] = value
        self.register_outputs(outputs)

    def _logins(self, registry: Registry) -> list[docker_build.RegistryArgs] | None:
        """The provider's own login; None: the push uses the user's docker login (`az acr login`, a gcloud helper)."""
        if registry.username is None or registry.password is None:
            return None
        return [
            docker_build.RegistryArgs(
                address=self._server.apply(registry_host),
                username=registry.username,
                password=pulumi.Output.secret(registry.password),
            )
        ]

    def _image(  # noqa: PLR0913 - what one build differs in
        self,
        role: str,
        context: str,
        target: str | None,
        revision: str,
        build_args: dict[str, str] | None,
        *,
        cache_tag: str = CACHE_TAG,
    ) -> docker_build.Image:
        args = self._args
        repository = self._server.apply(lambda s: f"{s}/{args.repository_prefix}-{role}")
        cache_from, cache_to = None, None
        if args.build_cache:
            cache_ref = repository.apply(lambda r: f"{r}:{cache_tag}")
            cache_from = [docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache_ref))]
            cache_to = [
                docker_build.CacheToArgs(
                    registry=docker_build.CacheToRegistryArgs(
                        ref=cache_ref,
                        # Every stage, not just the last: a trainer's CUDA and pip layers are the
                        # slow ones and live in earlier stages.
                        mode=docker_build.CacheMode.MAX,
                        # An OCI image manifest rather than Docker's default, a
                        # manifest list holding layers, which several registries refuse.
                        image_manifest=True,
                        oci_media_types=True,
                        # A failed cache export must not fail a deploy whose image was pushed.
                        ignore_error=True,
                    )
                )
            ]
        return docker_build.Image(
            f"{self._name}-{role}",
            docker_build.ImageArgs(
                push=True,
                context=docker_build.BuildContextArgs(location=context),
                dockerfile=docker_build.DockerfileArgs(location=dockerfile(context)),
                target=target,
                platforms=None if args.platform is None else [docker_build.Platform(args.platform)],
                # One tag only: with several, the provider's `ref` names one at random.
                tags=[repository.apply(lambda r: f"{r}:{revision}")],
                registries=self._registries,
                build_args=build_args,
                cache_from=cache_from,
                cache_to=cache_to,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
