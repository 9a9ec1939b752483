"""mlstack's Pulumi components: one ComponentResource per module, built from the pure layer (``mlstack``).

The app's interface (port, uid, mounts, env names, exit codes) is ``mlapp.contract``,
which must live in ``app/``, the images' build context; it is put on the import path
here, the one package every caller of a component imports first (``pulumi up`` runs
``__main__.py`` from the project root, where only that root is on the path).
"""

from __future__ import annotations

import sys
from pathlib import Path

_APP = str(Path(__file__).resolve().parent.parent / "app")
if _APP not in sys.path:
    sys.path.append(_APP)
