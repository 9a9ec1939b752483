"""mlstack's pure layer: no Pulumi SDK import, so the config loader, the components, the tools
and the tests all read the same facts and rules.

- ``problems``: the one ``Problem`` type and the one formatter for every error message;
- ``validate``: parsers of single config values (a quantity, a CIDR, an image reference);
- ``catalogue``: what every cloud shares (the trainer's and the server's CUDA builds, a Kubernetes minor's dates);
- ``clouds``: each cloud's facts and its own rules, one module per cloud (``clouds.azure``, ``clouds.gcp``,
  ``clouds.local``), and ``CLOUDS``, each one's ``Cloud`` by its mlstack:cloud value;
- ``capacity``: what a node can hold, and the check;
- ``rules``: every rule that relates config values, written once;
- ``specs``: the typed values a component is asked to build (what to train, how to serve).

The app's own interface (port, uid, mounts, env names, exit codes) is ``mlapp.contract``, and its
quality gate ``mlapp.gate``: the layer below this one, which must live in ``app/``, the server image's
build context. It is put on the import path here, in the package every layer above imports first
(``pulumi up`` runs ``__main__.py`` from the project root, where only that root is on the path), so the
config loader and the components read the same names and rules the app does.
"""

from __future__ import annotations

import sys
from pathlib import Path

_APP = str(Path(__file__).resolve().parent.parent / "app")
if _APP not in sys.path:
    sys.path.append(_APP)
