"""The model store layout, shared by the trainer and the server (no torch here).

    <root>/<name>/<version>/model.onnx       the exported model
    <root>/<name>/<version>/metadata.json    what produced it, how to feed it, and
                                             the model file's size and SHA-256
    <root>/<name>/.checkpoints/<version>.pt  the trainer's resumable state

Publishing never renames a directory. The stores we mount do not all allow
it: on a GCS FUSE mount of a flat-namespace bucket, gcsfuse refuses to rename
a non-empty directory with EMFILE ("Renaming directories in flat namespace
buckets is by default not supported": GoogleCloudPlatform/gcsfuse
``docs/semantics.md``; ``rename-dir-limit`` defaults to 0 in
``cfg/params.yaml``; ``internal/fs/fs.go`` ``renameNonHierarchicalDir``), and
the training Job would exit 1 on every retry. Renaming a *file*, over an
existing one too, works on every store: local disk, Azure Files over SMB, and
gcsfuse on flat and hierarchical buckets (since gcsfuse v3.2 through GCS's
atomic object move, before it as copy then delete). A written file is seen
by others only once it is closed: "Only finalized objects are visible"
(``docs/semantics.md``, streaming writes).

So a version is published file by file, and ``metadata.json`` is the commit
record, written last: it names the model file's size and SHA-256. A reader
takes a version as published only when ``metadata.json`` parses and the model
file it names matches it byte for byte, so a reader never loads a half-written
version, whatever the filesystem does between the two renames, and a truncated
or damaged model never counts as published.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
CHECKPOINT_DIR = ".checkpoints"
# metadata.json format 2 carries the model's checksum; format 1 (before it) is
# not trusted, since nothing proves its model file complete.
FORMAT_VERSION = 2
# The exported graph's interface, which metadata.json repeats for the server.
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"

# Names and versions become path segments: refuse anything that could escape
# the store ("..", "/") or hide as a dotfile next to our temporary files.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class NotPublished(Exception):
    """The version is not (or not yet) completely in the store; the message says what is missing."""


class StoreError(Exception):
    """Something in the store contradicts what was just written (e.g. a concurrent writer)."""


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
    return root / check_segment("model name", name) / CHECKPOINT_DIR / f"{check_segment('model version', version)}.pt"


@dataclass(frozen=True)
class ModelFile:
    """What metadata.json records of the model file: the commit's proof of completeness."""

    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"file": MODEL_FILE, "sha256": self.sha256, "bytes": self.size}


def _model_record(meta: Mapping[str, Any], where: Path) -> ModelFile:
    record = meta.get("model")
    if meta.get("format_version") != FORMAT_VERSION or not isinstance(record, dict):
        raise NotPublished(
            f"{where} is not a format {FORMAT_VERSION} record (it names no model checksum); "
            "the trainer republishes the version"
        )
    sha, size = record.get("sha256"), record.get("bytes")
    if record.get("file") != MODEL_FILE or not isinstance(sha, str) or not _SHA256.match(sha):
        raise NotPublished(f"{where} names no valid {MODEL_FILE} SHA-256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise NotPublished(f"{where} names no valid {MODEL_FILE} size")
    return ModelFile(sha, size)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotPublished(f"{path} does not exist") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise NotPublished(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise NotPublished(f"{path} is not a JSON object")
    return meta


def read_published(directory: Path) -> tuple[dict[str, Any], bytes]:
    """The metadata and model bytes of a published version; NotPublished if it is not complete.

    The model is read once and checked against the record, and those very
    bytes are returned: a file replaced between a check and a later open could
    otherwise slip through.
    """
    meta = _read_json(directory / METADATA_FILE)
    record = _model_record(meta, directory / METADATA_FILE)
    path = directory / MODEL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotPublished(f"{path} does not exist") from None
    if len(data) != record.size or hashlib.sha256(data).hexdigest() != record.sha256:
        raise NotPublished(
            f"{path} ({len(data)} bytes) does not match {METADATA_FILE} "
            f"({record.size} bytes, sha256 {record.sha256[:12]}…): incomplete or damaged"
        )
    return meta, data


def read_metadata(directory: Path) -> dict[str, Any]:
    """The metadata of a published version; NotPublished if the version is not complete."""
    meta, _ = read_published(directory)
    return meta


def is_complete(directory: Path) -> bool:
    try:
        read_published(directory)
    except (NotPublished, OSError):
        return False
    return True


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable on local disks; some FUSE and SMB mounts refuse
    # to open a directory, and there the rename is as durable as they allow.
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


def publish(
    root: Path,
    name: str,
    version: str,
    write_model: Callable[[Path], None],
    metadata: Mapping[str, Any],
) -> bool:
    """Publish a version: ``write_model(path)`` writes the model file; ``metadata`` goes beside it.

    The model is written to a local temporary directory first (``$TMPDIR``),
    so a failing ``write_model`` leaves the store untouched. Then the model is
    copied in and renamed into place, and ``metadata.json``, with the model's
    size and SHA-256, is written last, the same way.

    Returns True if this call published the version, False if a complete
    version was already there.
    """
    final = version_dir(root, name, version)
    if is_complete(final):
        return False
    with tempfile.TemporaryDirectory(prefix=f"mlapp-{version}-") as scratch:
        local = Path(scratch) / MODEL_FILE
        write_model(local)
        data = local.read_bytes()
    write_file_atomic(final / MODEL_FILE, data)
    record = ModelFile(hashlib.sha256(data).hexdigest(), len(data))
    meta = {**metadata, "format_version": FORMAT_VERSION, "model": record.as_dict()}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    write_file_atomic(final / METADATA_FILE, text.encode("utf-8"))
    try:
        read_published(final)
    except NotPublished as e:
        # Two writers of one version interleaved their files: the next run republishes.
        raise StoreError(f"{final} changed while it was being published: {e}") from None
    return True


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a (file) rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes it 0600; the server may run as another uid and only reads.
        # Mounts that fix modes themselves (gcsfuse, azurefile) may ignore this.
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
