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

Each file is written to a staging file beside it (``.<file>.<random>.tmp``)
and renamed over it. A writer killed in between leaves its staging file; the
next trainer of that version removes them (``remove_staging``) before it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

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


class Damaged(NotPublished):
    """metadata.json is a valid commit record, but the model file does not match the size or SHA-256 it names."""


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


def check_root(what: str, value: str) -> Path:
    """Return ``value`` as the store's root if it is safe, else raise ValueError naming ``what``.

    An empty path is the current directory, "/" the whole filesystem, and a
    ".." component leaves the directory the operator named; none of them is
    ever meant as a model store. A NUL byte no filesystem call accepts.
    Relative paths are allowed (``make train`` uses build/models).
    """
    path = Path(value)
    if not value or "\0" in value or str(path) == path.anchor or ".." in path.parts:
        raise ValueError(
            f"{what} must be a directory path that is not empty, not the filesystem root, "
            f"without a NUL byte and without a '..' component; got {value!r}"
        )
    return path


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
    sha256 = hashlib.sha256(data).hexdigest()
    if len(data) != record.size or sha256 != record.sha256:
        raise Damaged(
            f"{path} ({len(data)} bytes, sha256 {sha256[:12]}…) does not match {METADATA_FILE} "
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


# The staging files of write_file_atomic, named here and recognised here only:
# ``.<target>.<16 hex digits>.tmp`` beside the target. A dotfile, and no model
# name or version can start with "." (_SEGMENT), so none is ever taken for one.
STAGING_SUFFIX: Final = ".tmp"
_STAGING = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{16}" + re.escape(STAGING_SUFFIX) + "$")
# The write probe of trainers before this one: ``.probe-<pid>`` in the checkpoint directory.
_OLD_PROBE = re.compile(r"^\.probe-[0-9]+$")


def _create_staging(path: Path) -> tuple[int, Path]:
    """Create and open (O_EXCL) a new staging file for ``path``, mode 0600 as mkstemp makes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{STAGING_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:  # 64 random bits: practically never
            continue


def staging_target(name: str) -> str | None:
    """The file name a staging file of ours stands for (``.model.onnx.<hex>.tmp``: ``model.onnx``), else None."""
    match = _STAGING.match(name)
    return match.group("target") if match else None


def check_writable(path: Path) -> None:
    """Create and remove a staging file for ``path``; OSError if its directory cannot be written.

    A staging file rather than a fixed probe name: a kill in between leaves
    what ``remove_staging`` removes, and runs of other versions never share it.
    """
    fd, tmp = _create_staging(path)
    os.close(fd)
    tmp.unlink()


def remove_staging(root: Path, name: str, version: str) -> int:
    """Remove the staging files that killed runs of this version left behind; return how many.

    Only this version's: staging files of its model, metadata and checkpoint
    (plus old trainers' ``.probe-<pid>``). The checkpoint directory is shared
    by every version of the model, and a trainer of another version may be
    writing there right now. Nothing else is touched, whatever its name.
    """
    final = version_dir(root, name, version)
    checkpoint = checkpoint_path(root, name, version)
    ours = {final: {MODEL_FILE, METADATA_FILE}, checkpoint.parent: {checkpoint.name}}
    removed = 0
    for directory, targets in ours.items():
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            leftover = staging_target(entry.name) in targets or (
                directory == checkpoint.parent and _OLD_PROBE.match(entry.name) is not None
            )
            if leftover and not entry.is_dir(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a staging file and a (file) rename."""
    fd, tmp = _create_staging(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # Created 0600; the server may run as another uid and only reads.
        # Mounts that fix modes themselves (gcsfuse, azurefile) may ignore this.
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
