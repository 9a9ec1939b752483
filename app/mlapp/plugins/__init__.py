"""Pre/post-processing plug-ins: model-specific routes a published model may declare.

The generic server speaks the Open Inference Protocol for any model and knows nothing of what a
model's tensors mean. A model that wants more (an image classifier that takes a picture upload)
names one plug-in in its published metadata (``serving.json`` -> ``plugin``, the trainer
contract), with its parameters. ``configure`` checks them against the model's signature when the
model is published and again when it is served, so a plug-in never meets a model it cannot feed.

One plug-in exists: ``image-classifier`` (``POST /predict``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from mlapp.signature import Signature


class PluginError(ValueError):
    """A plug-in declaration that does not fit the model (or is not one); the message says what and why."""


class Plugin(Protocol):
    """What the server asks of a configured plug-in."""

    @property
    def name(self) -> str: ...

    @property
    def input(self) -> str:
        """The model input the plug-in feeds: its rows come from ``parse``."""
        ...

    @property
    def output(self) -> str:
        """The model output the plug-in reads."""
        ...

    def parse(self, body: bytes, content_type: str) -> npt.NDArray[np.float32]:
        """The request body as rows of ``input`` (shape ``[1, ...]``); raises a mapped error for bad bodies."""
        ...

    def check_type(self, content_type: str) -> None:
        """Refuse a body of a media type the plug-in does not read, before the body is read."""
        ...

    def answer(self, scores: npt.NDArray[Any], labels: Sequence[str] | None) -> dict[str, Any]:
        """The answer for one row of ``output``."""
        ...

    def describe(self) -> dict[str, Any]:
        """The plug-in's parameters as published, for the model's metadata."""
        ...


Configure = Callable[[Mapping[str, Any], Signature, Sequence[str] | None], Plugin]


def _registry() -> dict[str, Configure]:
    from mlapp.plugins import image_classifier  # noqa: PLC0415 - Pillow loads only where a plug-in is used

    return {image_classifier.NAME: image_classifier.configure}


NAMES: Final = ("image-classifier",)


def configure(declaration: object, signature: Signature, labels: Sequence[str] | None) -> Plugin | None:
    """The plug-in a model's metadata declares, checked against its signature; None when it declares none."""
    if declaration is None:
        return None
    if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
        raise PluginError('a plug-in is declared as an object with a "name", e.g. {"name": "image-classifier", ...}')
    registry = _registry()
    make = registry.get(declaration["name"])
    if make is None:
        raise PluginError(f"unknown plug-in {declaration['name']!r}; known: {', '.join(sorted(registry))}")
    params = {k: v for k, v in declaration.items() if k != "name"}
    return make(params, signature, labels)
