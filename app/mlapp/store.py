"""The model store layout, shared by the trainer and the server (no torch here).

    <root>/<name>/<version>/model.onnx       the exported model
    <root>/<name>/<version>/metadata.json    what produced it and how to feed it
    <root>/<name>/.checkpoints/<version>.pt  the trainer's resumable state
    <root>/<name>/.tmp-<version>-*           staging directories (same filesystem)

A version directory only ever appears by ``os.rename`` of a complete staging
directory, so a reader sees either nothing or the whole model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
CHECKPOINT_DIR = ".checkpoints"
# The exported graph's interface, which metadata.json repeats for the server.
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"

# Names and versions become path segments: refuse anything that could escape
# the store ("..", "/") or hide as a dotfile next to our staging directories.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_segment(what: str, value: str) -> str:
    """Return ``value`` if it is safe as one path segment, else raise ValueError naming ``what``."""
    if not _SEGMENT.match(value) or ".." in value:
        raise ValueError(
            f"{what} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit and without '..'; got {value!r}"
        )
    return value


def version_dir(root: Path, name: str, version: str) -> Path:
    return root / check_segment("model name", name) / check_segment("model version", version)


def checkpoint_path(root: Path, name: str, version: str) -> Path:
    return (
        root
        / check_segment("model name", name)
        / CHECKPOINT_DIR
        / f"{check_segment('model version', version)}.pt"
    )


def read_metadata(directory: Path) -> dict[str, Any]:
    """Read ``metadata.json`` from a version directory; raise if it or the model is missing."""
    if not (directory / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{directory / MODEL_FILE} does not exist")
    with (directory / METADATA_FILE).open(encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{directory / METADATA_FILE} is not a JSON object")
    return meta


def is_complete(directory: Path) -> bool:
    try:
        read_metadata(directory)
    except (OSError, ValueError):
        return False
    return True


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some filesystems (FUSE, SMB) refuse
    # opening a directory, and there the rename is as durable as they allow.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(root: Path, name: str, version: str, write: Callable[[Path], None]) -> bool:
    """Build a version in a staging directory with ``write`` and rename it into place.

    Returns True if this call published the version, False if a complete
    version was already there (another run won the race). If ``write`` raises,
    the staging directory is removed and nothing appears at the final path.
    """
    final = version_dir(root, name, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=final.parent))
    try:
        write(staging)
        for child in staging.iterdir():
            with child.open("rb") as f:
                os.fsync(f.fileno())
        # mkdtemp makes it 0700, but the server may run as another uid and only reads.
        os.chmod(staging, 0o755)  # noqa: S103
        try:
            os.rename(staging, final)
        except OSError:
            if is_complete(final):
                return False
            raise
        _fsync_dir(final.parent)
        return True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
