"""The model store: its layout, and how a version is published into it and read back, whole or not at all.

    <root>/<name>/<version>/model.onnx          the model
    <root>/<name>/<version>/metadata.json       what it is (signature, metrics, gate, how to serve
                                                it) and the model file's size and SHA-256
    <root>/<name>/.runs/<version>/              a training run's outputs (the trainer contract)
    <root>/<name>/.checkpoints/<version>/       a training run's resumable state

Publishing never renames a directory. The stores we mount do not all allow it: on a GCS FUSE mount
of a flat-namespace bucket, gcsfuse refuses to rename a non-empty directory with EMFILE ("Renaming
directories in flat namespace buckets is by default not supported": GoogleCloudPlatform/gcsfuse
``docs/semantics.md``; ``rename-dir-limit`` defaults to 0 in ``cfg/params.yaml``;
``internal/fs/fs.go`` ``renameNonHierarchicalDir``), and the publish Job would exit 1 on every
retry. Renaming a *file*, over an existing one too, works on every store: local disk, Azure Files
over SMB, and gcsfuse on flat and hierarchical buckets (since gcsfuse v3.2 through GCS's atomic
object move, before it as copy then delete). A written file is seen by others only once it is
closed: "Only finalized objects are visible" (``docs/semantics.md``, streaming writes).

So a version is published file by file, and ``metadata.json`` is the commit record, written last:
it names the model file's size and SHA-256. A reader takes a version as published only when
``metadata.json`` parses and the model file it names matches it byte for byte, so a reader never
loads a half-written version, whatever the filesystem does between the two renames, and a
truncated or damaged model never counts as published.

Each file is written to a staging file beside it (``.<file>.<random>.tmp``) and renamed over it. A
writer killed in between leaves its staging file; the next publisher of that version removes them
(``remove_staging``) before it writes.

A model is read once. ``ModelBytes.read`` hashes the file while it reads it into memory, so the
bytes that were checked are the bytes that are loaded or copied, and a store on the network (GCS,
Azure Files) is read a single time. Where Linux gives an anonymous memory file (``memfd_create``),
the bytes live there, sealed against change, and ONNX Runtime loads them by its ``/proc/self/fd``
path: the process holds one copy of the model besides what ONNX Runtime builds from it. A
``bytes`` object handed to ``onnxruntime.InferenceSession`` would be kept alive by the session for
its whole life ("self._model_bytes = path_or_bytes  # TODO: This is bad as we're holding the
memory indefinitely", onnxruntime/python/onnxruntime_inference_collection.py, 1.31.1) and copied
once more into a ``std::string`` by the binding (``C.InferenceSession(..., const std::string
arg, ...)``, onnxruntime/python/onnxruntime_pybind_state.cc).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from mlapp import contract

MODEL_FILE: Final = "model.onnx"
METADATA_FILE: Final = contract.METADATA_FILE_NAME
# metadata.json format 3 describes any model (its signature, metrics, gate, plug-in); formats 1 and 2
# described only the digits CNN and are not read: the publish Job republishes such a version.
FORMAT_VERSION: Final = 3
# One ONNX file is one protobuf message, which protobuf caps at 2 GiB
# (https://onnx.ai/onnx/repo-docs/ExternalData.html: "the 2GB protobuf limit"); larger models keep
# their tensors in external data files, which the store does not hold.
MAX_MODEL_BYTES: Final = 2 << 30
# metadata.json holds a signature, labels and metrics: generous, yet bounded.
MAX_METADATA_BYTES: Final = 16 << 20
CHUNK_BYTES: Final = 1 << 20

# Names and versions become path segments: refuse anything that could escape the store ("..", "/")
# or hide as a dotfile next to our staging files and the .runs and .checkpoints directories.
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

    An empty path is the current directory, "/" the whole filesystem, and a ".." component leaves
    the directory the operator named; none of them is ever meant as a model store. A NUL byte no
    filesystem call accepts. Relative paths are allowed (``make train`` uses build/models).
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


def run_dir(root: Path, name: str, version: str) -> Path:
    """A training run's outputs (the trainer contract's MLAPP_OUTPUT_DIR)."""
    return root / check_segment("model name", name) / contract.RUNS_DIR / check_segment("model version", version)


def checkpoint_dir(root: Path, name: str, version: str) -> Path:
    """A training run's resumable state (the trainer contract's MLAPP_CHECKPOINT_DIR)."""
    segment = check_segment("model version", version)
    return root / check_segment("model name", name) / contract.CHECKPOINTS_DIR / segment


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
            "the publish Job republishes the version"
        )
    sha, size = record.get("sha256"), record.get("bytes")
    if record.get("file") != MODEL_FILE or not isinstance(sha, str) or not _SHA256.match(sha):
        raise NotPublished(f"{where} names no valid {MODEL_FILE} SHA-256")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MODEL_BYTES:
        raise NotPublished(f"{where} names no valid {MODEL_FILE} size")
    return ModelFile(sha, size)


class FileTooLarge(ValueError):
    """A file meant to be small (a record, metrics, labels) is over its bound; the message names it."""


def read_at_most(path: Path, limit: int) -> bytes:
    """The whole of a small file, of which at most ``limit`` + 1 bytes are ever read: FileTooLarge past
    ``limit``, whatever the file's size. The one bounded read of every small file the app takes from a
    store or a trainer (metadata.json here; metrics.json, serving.json and labels.txt in ``gate`` and
    ``publish``)."""
    with path.open("rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise FileTooLarge(f"{path} is over {limit} bytes")
    return raw


def _read_json(path: Path) -> dict[str, Any]:
    """A metadata file as a JSON object; NotPublished for anything else, damaged bytes included (so the
    next publisher rewrites it rather than failing on it)."""
    try:
        raw = read_at_most(path, MAX_METADATA_BYTES)
    except FileNotFoundError:
        raise NotPublished(f"{path} does not exist") from None
    except FileTooLarge as e:
        raise NotPublished(str(e)) from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    # RecursionError: JSON nested deeper than the interpreter's recursion limit, which json.loads raises as such,
    # not as a ValueError ("[" * 100_000 is 100 kB, well under the bound).
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NotPublished(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise NotPublished(f"{path} is not a JSON object")
    return meta


def read_record(directory: Path) -> tuple[dict[str, Any], ModelFile]:
    """A version's metadata and the model file it names; NotPublished if there is no valid record."""
    meta = _read_json(directory / METADATA_FILE)
    return meta, _model_record(meta, directory / METADATA_FILE)


def _damaged(path: Path, size: int, sha256: str, record: ModelFile) -> Damaged:
    return Damaged(
        f"{path} ({size} bytes, sha256 {sha256[:12]}…) does not match {METADATA_FILE} "
        f"({record.size} bytes, sha256 {record.sha256[:12]}…): incomplete or damaged"
    )


def file_digest(path: Path) -> ModelFile:
    """The size and SHA-256 of a file, read in chunks: memory stays constant, whatever its size."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return ModelFile(digest.hexdigest(), size)


def verify(directory: Path) -> dict[str, Any]:
    """The metadata of a published version, its model checked against the record without holding it in
    memory; NotPublished (or Damaged) if the version is not complete."""
    meta, record = read_record(directory)
    path = directory / MODEL_FILE
    try:
        found = file_digest(path)
    except FileNotFoundError:
        raise NotPublished(f"{path} does not exist") from None
    if found != record:
        raise _damaged(path, found.size, found.sha256, record)
    return meta


def is_complete(directory: Path) -> bool:
    try:
        verify(directory)
    except (NotPublished, OSError):
        return False
    return True


class ModelBytes:
    """A model file's bytes, read once while they are hashed, held once in memory.

    In a sealed anonymous memory file where the OS has ``memfd_create`` (Linux): ``source`` is then
    its ``/proc/self/fd`` path, which ONNX Runtime opens like any file. Elsewhere (a laptop's macOS),
    a ``bytes`` object. Close it (or use it as a context manager) to free the memory.
    """

    def __init__(self, sha256: str, size: int, fd: int | None, data: bytes | None) -> None:
        self.sha256 = sha256
        self.size = size
        self._fd = fd
        self._data = data

    @classmethod
    def read(cls, path: Path, expect: ModelFile | None = None, limit: int = MAX_MODEL_BYTES) -> ModelBytes:
        """Read ``path`` once, hashing it. With ``expect`` (the commit record), Damaged unless it matches."""
        with path.open("rb") as f:
            # Not read at all when its size already says no.
            size = os.fstat(f.fileno()).st_size
            if expect is not None and size != expect.size:
                raise Damaged(f"{path} is {size} bytes but {METADATA_FILE} names {expect.size}: incomplete or damaged")
            if size > limit:
                raise ValueError(f"{path} is {size} bytes; a model file may be at most {limit} bytes")
            model = cls._into_memfd(f, limit) if _HAS_MEMFD else cls._into_bytes(f, limit)
        if expect is not None and (model.size != expect.size or model.sha256 != expect.sha256):
            found = (model.size, model.sha256)
            model.close()
            raise _damaged(path, found[0], found[1], expect)
        return model

    @classmethod
    def _into_memfd(cls, f: io.BufferedReader, limit: int) -> ModelBytes:
        fd = os.memfd_create("mlapp-model", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            digest = hashlib.sha256()
            size = 0
            buffer = bytearray(CHUNK_BYTES)
            view = memoryview(buffer)
            while n := f.readinto(buffer):
                size += n
                if size > limit:  # the file grew while it was read
                    raise ValueError(f"the model file is over {limit} bytes")
                digest.update(view[:n])
                _write_all(fd, view[:n])
            # No write, growth or shrinking from now on: what was hashed is what is loaded
            # (https://man7.org/linux/man-pages/man2/memfd_create.2.html, "File sealing").
            import fcntl  # noqa: PLC0415 - POSIX only, like memfd itself

            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        except BaseException:
            os.close(fd)
            raise
        return cls(digest.hexdigest(), size, fd, None)

    @classmethod
    def _into_bytes(cls, f: io.BufferedReader, limit: int) -> ModelBytes:
        data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"the model file is over {limit} bytes")
        return cls(hashlib.sha256(data).hexdigest(), len(data), None, data)

    @property
    def record(self) -> ModelFile:
        return ModelFile(self.sha256, self.size)

    @property
    def source(self) -> str | bytes:
        """What ``onnxruntime.InferenceSession`` loads: a path, or the bytes themselves."""
        if self._fd is not None:
            return f"/proc/self/fd/{self._fd}"
        if self._data is None:
            raise ValueError("the model's bytes were released")
        return self._data

    def write_to(self, out: IO[bytes]) -> None:
        """Copy the bytes into ``out``, a chunk at a time."""
        if self._fd is None:
            if self._data is None:
                raise ValueError("the model's bytes were released")
            out.write(self._data)
            return
        offset = 0
        while offset < self.size:
            chunk = os.pread(self._fd, CHUNK_BYTES, offset)
            if not chunk:
                raise StoreError("the model's memory file ended early")
            out.write(chunk)
            offset += len(chunk)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._data = None

    def __enter__(self) -> ModelBytes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


# memfd_create is Linux's (Python exposes it there only: https://docs.python.org/3.11/library/os.html#os.memfd_create),
# and the path ONNX Runtime opens is procfs's.
_HAS_MEMFD: Final = hasattr(os, "memfd_create") and sys.platform == "linux" and Path("/proc/self/fd").is_dir()


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def load(directory: Path) -> tuple[dict[str, Any], ModelBytes]:
    """The metadata and the verified model bytes of a published version; NotPublished if it is not complete."""
    meta, record = read_record(directory)
    path = directory / MODEL_FILE
    try:
        return meta, ModelBytes.read(path, expect=record)
    except FileNotFoundError:
        raise NotPublished(f"{path} does not exist") from None


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


def commit(root: Path, name: str, version: str, model: ModelBytes, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``model`` and then its commit record into the store: the version is published once this returns.

    Staging files an interrupted publisher of this version left are removed first. The record holds
    ``metadata`` plus the format and the model's size and SHA-256. Returns the record as written;
    TypeError or ValueError, with nothing written, when ``metadata`` is not JSON.
    """
    final = version_dir(root, name, version)
    # The record is made before anything is written: metadata that cannot be JSON (a NaN, an object)
    # fails here, leaving the store as it was, not after the model file is in place.
    meta = {**metadata, "format_version": FORMAT_VERSION, "model": model.record.as_dict()}
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    final.mkdir(parents=True, exist_ok=True)
    remove_staging(root, name, version)
    write_atomic(final / MODEL_FILE, model.write_to)
    write_file_atomic(final / METADATA_FILE, text.encode("utf-8"))
    try:
        verify(final)
    except NotPublished as e:
        # Two writers of one version interleaved their files: the next run republishes.
        raise StoreError(f"{final} changed while it was being published: {e}") from None
    return meta


def remove_run(root: Path, name: str, version: str) -> list[str]:
    """Remove a published version's training outputs and checkpoints; what could not be removed, as messages."""
    problems: list[str] = []
    for directory in (run_dir(root, name, version), checkpoint_dir(root, name, version)):
        if directory.exists():
            shutil.rmtree(directory, onerror=lambda _f, path, e: problems.append(f"{path}: {e[1]}"))
    return problems


# The staging files of write_atomic, named here and recognised here only:
# ``.<target>.<16 hex digits>.tmp`` beside the target. A dotfile, and no model
# name or version can start with "." (_SEGMENT), so none is ever taken for one.
STAGING_SUFFIX: Final = ".tmp"
_STAGING = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{16}" + re.escape(STAGING_SUFFIX) + "$")


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


def remove_staging(root: Path, name: str, version: str) -> int:
    """Remove the staging files that interrupted publishers of this version left behind; return how many.

    Only this version's, and only staging files of its model and metadata: nothing else is touched,
    whatever its name.
    """
    final = version_dir(root, name, version)
    removed = 0
    try:
        entries = list(os.scandir(final))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if staging_target(entry.name) in (MODEL_FILE, METADATA_FILE) and not entry.is_dir(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Have ``write`` fill a staging file beside ``path``, then rename it over ``path`` (a file rename)."""
    fd, tmp = _create_staging(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
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


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a staging file and a (file) rename."""
    write_atomic(path, lambda f: f.write(data))
