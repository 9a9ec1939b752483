"""Files written whole or not at all: the checkpoint and the outputs, in a store that outlives the pod.

Each file is written to a staging file beside it (``.<file>.<16 hex digits>.tmp``), flushed to
disk, and renamed over its target: a reader sees the old file or the new one, never half of one.
Renaming a *file*, over an existing one too, works on every store mlstack mounts: local disk, Azure
Files over SMB, and gcsfuse on flat and hierarchical buckets (since gcsfuse v3.2 through GCS's
atomic object move, before it as copy then delete; GoogleCloudPlatform/gcsfuse ``docs/semantics.md``).
No directory is ever renamed: gcsfuse refuses that on a flat bucket.

A writer killed between the write and the rename leaves its staging file; the next run of the
trainer removes its own (``remove_staging``) before it starts.

A file that must be trusted when it is read back (the checkpoint, a zip archive as torch.save writes it)
carries its own size and SHA-256 in the archive's comment, the free text a zip keeps at its very end
(``write_checked``): ``digits-checkpoint 1 <bytes> <sha256>``, naming every byte before the comment. Checksum
and data are one file, made visible by one rename, so they never disagree unless the bytes were damaged since
(a checksum beside the file would be a second file and a second rename); zip readers, torch.load among them,
read the archive as before. ``read_checked`` gives the bytes only when they match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import struct
from collections.abc import Collection
from pathlib import Path
from typing import Final

STAGING_SUFFIX: Final = ".tmp"
_STAGING = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{16}" + re.escape(STAGING_SUFFIX) + "$")
# A zip archive ends with its end of central directory record: 22 bytes, the last 2 the length of the comment
# that follows (PKWARE APPNOTE.TXT, 4.3.16). The comment of a checked archive has a fixed length.
_ZIP_END: Final = b"PK\x05\x06"
_ZIP_END_BYTES: Final = 22
CHECKED_MAGIC: Final = b"digits-checkpoint"
CHECKED_FORMAT: Final = 1
_CHECKED_COMMENT = re.compile(
    re.escape(CHECKED_MAGIC) + b" %d " % CHECKED_FORMAT + rb"(?P<size>[0-9]{15}) (?P<sha256>[0-9a-f]{64})"
)
CHECKED_COMMENT_BYTES: Final = len(CHECKED_MAGIC) + 3 + 15 + 1 + 64


class Unverified(Exception):
    """A checked file that cannot be trusted: it names no size and SHA-256, or bytes that do not match them."""


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
    """The file name a staging file stands for (``.model.onnx.<hex>.tmp``: ``model.onnx``), else None."""
    match = _STAGING.match(name)
    return match.group("target") if match else None


def check_writable(path: Path) -> None:
    """Create and remove a staging file for ``path``; OSError if its directory cannot be written.

    A staging file rather than a fixed probe name: a kill in between leaves what ``remove_staging``
    removes.
    """
    fd, tmp = _create_staging(path)
    os.close(fd)
    tmp.unlink()


def remove_staging(directory: Path, targets: Collection[str]) -> int:
    """Remove the staging files for ``targets`` that killed writers left in ``directory``; return how many.

    Only staging files of those names: nothing else is touched, whatever its name.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if staging_target(entry.name) in targets and not entry.is_dir(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


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


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a staging file, fsync and a (file) rename."""
    fd, tmp = _create_staging(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # Created 0600; the publisher may run as another uid and only reads.
        # Mounts that fix modes themselves (gcsfuse, azurefile) may ignore this.
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_checked(path: Path, archive: bytes) -> None:
    """Write a zip ``archive`` that has no comment yet, with its size and SHA-256 as its comment, whole or not at
    all (``write_file_atomic``); ValueError if it is not such an archive."""
    end = archive[-_ZIP_END_BYTES:]
    if len(archive) < _ZIP_END_BYTES or not end.startswith(_ZIP_END) or end[-2:] != b"\0\0":
        raise ValueError("not a zip archive without a comment")
    body = archive[:-2] + struct.pack("<H", CHECKED_COMMENT_BYTES)
    digest = hashlib.sha256(body).hexdigest().encode()
    comment = b"%s %d %015d %s" % (CHECKED_MAGIC, CHECKED_FORMAT, len(body), digest)
    write_file_atomic(path, body + comment)


def read_checked(path: Path) -> bytes:
    """The whole of a file ``write_checked`` wrote, read once; Unverified unless its bytes have the size and SHA-256
    its comment names (OSError if it cannot be read at all)."""
    data = path.read_bytes()
    body, comment = data[:-CHECKED_COMMENT_BYTES], data[-CHECKED_COMMENT_BYTES:]
    match = _CHECKED_COMMENT.fullmatch(comment)
    if match is None:
        if CHECKED_MAGIC in data[-2 * CHECKED_COMMENT_BYTES :]:
            raise Unverified("it is damaged (its size and SHA-256 at its end cannot be read)")
        raise Unverified(
            "it carries no size and SHA-256 at its end to verify it by: a checkpoint from before they were "
            "recorded, not this trainer's, or cut short"
        )
    size, expected = int(match["size"]), match["sha256"].decode()
    digest = hashlib.sha256(body).hexdigest()
    if len(body) != size or digest != expected:
        raise Unverified(
            f"it is damaged (its {len(body)} bytes have SHA-256 {digest[:12]}…, "
            f"its end names {size} bytes with SHA-256 {expected[:12]}…)"
        )
    return data
