"""mlstack's pure layer: no Pulumi SDK import, so the config loader, the components, the tools
and the tests all read the same facts and rules.

- ``problems``: the one ``Problem`` type and the one formatter for every error message;
- ``validate``: parsers of single config values (a quantity, a CIDR, an image reference);
- ``catalogue``: the clouds' facts (GPU machines, drivers, regions, the trainer's CUDA builds);
- ``capacity``: what a node can hold, per cloud and machine;
- ``rules``: every rule that relates config values, written once;
- ``specs``: the typed values a component is asked to build (what to train, how to serve);
- ``acr_token``: the Entra ID to ACR refresh-token exchange, bounded in time, tries and size.

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
