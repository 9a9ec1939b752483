"""Mock answers for pulumi-docker-build: what a build and push would report.

Registered in ``tools.harness.default_mocks``. The digest is derived from what
decides the image's bytes (tags, target, platforms, context, Dockerfile, build
args), never from credentials, so the same source gives the same digest on
every run, and a changed tag or target gives another, as a real build would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks

IMAGE = "docker-build:index:Image"
_CONTENT_INPUTS = ("tags", "target", "platforms", "context", "dockerfile", "buildArgs")


def image_digest(inputs: dict[str, Any]) -> str:
    """The sha256 digest the mocks give an image built from ``inputs`` (wire names)."""
    decisive = {key: inputs.get(key) for key in _CONTENT_INPUTS}
    return "sha256:" + hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()


def _image(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    tags = args.inputs.get("tags") or []
    digest = image_digest(args.inputs)
    # As the provider does for a pushed image: a tag with the digest appended.
    return {"digest": digest, "ref": f"{tags[0]}@{digest}" if tags else "", "contextHash": digest[7:23]}


OUTPUTS: dict[str, Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]] = {IMAGE: _image}
CALLS: dict[str, Callable[[pulumi_mocks.MockCallArgs], dict[str, Any]]] = {}
