"""The app images' pure side: the source revision that tags them, and the arguments refused before any build.

The component under mocks: tests/components/test_image.py; in whole stacks: tests/stacks/test_image.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import image
from components.image import AppImageArgs
from components.target import Registry
from tests.args import IMAGE_BAD_ARGUMENTS, write_app


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


@pytest.mark.parametrize(("changes", "message"), IMAGE_BAD_ARGUMENTS)
def test_bad_arguments_are_refused_with_every_reason(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"registry": Registry(server="localhost:5001"), "repository_prefix": "mlstack", **changes}
    with pytest.raises(image.ImageError, match=r"cannot build the app images \(1 problem\)") as caught:
        image.check(AppImageArgs(**args))
    assert message in str(caught.value)
    if changes.get("registry", True) is None:
        assert "mlstack:trainerImage" in str(caught.value)
        assert "mlstack:serverImage" in str(caught.value)


def test_sound_arguments_give_the_registry_to_push_to() -> None:
    registry = Registry(server="localhost:5001")
    assert image.check(AppImageArgs(registry=registry, repository_prefix="mlstack")) is registry
