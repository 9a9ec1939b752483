"""Every cluster target mlstack deploys to, by its mlstack:cloud value: ``CLOUDS``.

A cloud's facts and its own rules are its module here, ``<cloud>.py``, which ends with its ``CLOUD``: what
every cloud provides generic code (``Cloud``, mlstack/clouds/cloud.py). Where a cloud needs more, its other
modules carry its name as a prefix (``azure_api.py``, ``gcp_locations.py``): its APIs' clients, its largest
tables. No cloud's module imports another cloud's, and no generic module imports a cloud's or asks which
cloud it is on: it is handed a ``Cloud`` (tests/pure/test_layers.py holds the imports, tests/pure/test_clouds.py
the names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from mlstack.clouds import azure, gcp, local
from mlstack.clouds.cloud import Cloud, NodeFacts, Sidecar

__all__ = ["CLOUDS", "Cloud", "NodeFacts", "Sidecar"]

# In the order Pulumi.yaml's description of mlstack:cloud names them, and config messages list them.
CLOUDS: Final[Mapping[str, Cloud]] = {cloud.name: cloud for cloud in (azure.CLOUD, gcp.CLOUD, local.CLOUD)}
