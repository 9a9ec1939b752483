"""The program's top layer, below ``__main__.py``: ``config`` reads the stack's keys once and
``wiring`` maps them onto the components' Args. Nothing below imports it.

``mlstack`` is imported first: it puts ``app/`` on the import path, so ``config`` judges the gate with
the app's own ``mlapp.gate``.
"""

from __future__ import annotations

import mlstack  # noqa: F401 - puts app/ on the import path (mlstack/__init__.py)
