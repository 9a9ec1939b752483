"""mlstack's Pulumi components: one ComponentResource per module, built from the pure layer (``mlstack``).

The app's interface (port, uid, mounts, env names, exit codes) is ``mlapp.contract``, which
lives in ``app/``; ``mlstack`` puts ``app/`` on the import path, and is imported here first, since a
component module imports ``mlapp`` before ``mlstack``.
"""

from __future__ import annotations

import mlstack  # noqa: F401 - puts app/ on the import path (mlstack/__init__.py)
