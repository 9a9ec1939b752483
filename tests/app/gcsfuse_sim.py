"""A model store that behaves like a GCS FUSE mount of a flat-namespace bucket.

gcsfuse (v3.11, GoogleCloudPlatform/gcsfuse) refuses to rename a non-empty
directory on a flat bucket: ``rename-dir-limit`` defaults to 0
(``cfg/params.yaml``), and ``internal/fs/fs.go`` ``renameNonHierarchicalDir``
then fails with ``"too many objects to be renamed: %w", syscall.EMFILE``.
``docs/semantics.md``: "Renaming directories in flat namespace buckets is by
default not supported." An empty directory still renames, and a file renames
over an existing one. GKE's Cloud Storage FUSE CSI driver passes gcsfuse its
defaults unless the volume's ``mountOptions`` say otherwise. Hard links are
not supported at all.

``refuse_directory_renames()`` patches this process's ``os`` the same way, so
whatever renames a directory (``os.rename``, ``os.replace``, ``Path.rename``,
``shutil.move``) fails as it would on that mount. Run as a script, it applies
the patch and then runs a module, so a trainer, publisher or server subprocess sees it:

    python tests/app/gcsfuse_sim.py -m mlapp.publish --run ... ...
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any

# What rename(2) of a non-empty directory gets from gcsfuse on a flat bucket (fs.go, above).
DIRECTORY_RENAME_ERRNO = errno.EMFILE
MARKER = "MLAPP_TEST_GCSFUSE_SIM"


def _refusing(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if os.path.isdir(src) and not os.path.islink(src) and os.listdir(src):
            raise OSError(DIRECTORY_RENAME_ERRNO, f"{name}: too many objects to be renamed (gcsfuse, flat bucket)", src)
        return original(src, dst, *args, **kwargs)

    return rename


def _no_links(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOTSUP, "link: hard links are not supported (gcsfuse)")


def refuse_directory_renames() -> None:
    """Make this process's ``os`` refuse directory renames and hard links as gcsfuse does."""
    os.rename = _refusing(os.rename, "rename")
    os.replace = _refusing(os.replace, "replace")
    os.link = _no_links
    os.environ[MARKER] = "1"


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: gcsfuse_sim.py -m MODULE [ARGS...]")
    refuse_directory_renames()
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
