"""The image-classifier plug-in: ``POST /predict`` with a picture, answered with the best class.

Declared in a model's ``serving.json`` (the trainer contract) as::

    {"name": "image-classifier", "input": "input", "output": "probabilities",
     "height": 8, "width": 8, "foreground": "light", "mean": 0, "std": 1, "scores": "probabilities"}

``input`` is an FP32 input shaped ``[N, 1, H, W]`` (one grey channel); a picture becomes one row of
it (``image.py``: decoded within fixed bounds, grey, resized to ``height`` x ``width``, turned the
way round ``foreground`` says, scaled to [0, 1], then ``(x - mean) / std``). ``output`` is an FP32
output shaped ``[N, classes]``, read as probabilities, or as logits turned into them by softmax.
The model must take no other input: a picture is all a caller sends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from mlapp.plugins import PluginError
from mlapp.plugins.image import FOREGROUNDS, MAX_MODEL_SIDE, InputError, Preprocessing, image_bytes_to_input
from mlapp.plugins.image import pixels_to_input as _pixels_to_input
from mlapp.serve.errors import BadRequest, UnsupportedMediaType
from mlapp.serve.multipart import parse_multipart, parse_params
from mlapp.signature import Signature

NAME: Final = "image-classifier"
SCORES: Final = ("probabilities", "logits")
PARAMETERS: Final = ("input", "output", "height", "width", "foreground", "mean", "std", "scores")
MEDIA_TYPES: Final = ("multipart/form-data", "application/json")
INPUT_RANK: Final = 4  # [N, 1, height, width]
OUTPUT_RANK: Final = 2  # [N, classes]


@dataclass(frozen=True)
class ImageClassifier:
    input: str
    output: str
    pre: Preprocessing
    scores: str
    name: str = NAME

    def check_type(self, content_type: str) -> None:
        kind, _ = parse_params(content_type) if content_type else ("", {})
        if kind not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                "send multipart/form-data with an 'image' field, or application/json with 'pixels'"
                + (f" (got Content-Type {kind!r})" if kind else " (no Content-Type was sent)")
            )

    def parse(self, body: bytes, content_type: str) -> npt.NDArray[np.float32]:
        """One row of the model's input from a multipart ``image`` field, or JSON ``pixels``."""
        self.check_type(content_type)
        if parse_params(content_type)[0] == "multipart/form-data":
            fields = parse_multipart(body, content_type)
            if "image" not in fields:
                raise BadRequest("multipart form has no 'image' field")
            return image_bytes_to_input(fields["image"], self.pre)
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"malformed JSON: {e}") from e
        if not isinstance(request, dict) or "pixels" not in request:
            raise BadRequest("JSON body must be an object with 'pixels'")
        return _pixels_to_input(request["pixels"], self.pre)

    def answer(self, scores: npt.NDArray[Any], labels: Sequence[str] | None) -> dict[str, Any]:
        row = np.asarray(scores, dtype=np.float32).ravel()
        if self.scores == "logits":
            shifted = np.exp(row - row.max())
            row = shifted / shifted.sum()
        best = int(row.argmax())
        return {"label": labels[best] if labels else str(best), "class": best, "probabilities": row}

    def describe(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "input": self.input,
            "output": self.output,
            "height": self.pre.height,
            "width": self.pre.width,
            "foreground": self.pre.foreground,
            "mean": self.pre.mean,
            "std": self.pre.std,
            "scores": self.scores,
        }


def _side(params: Mapping[str, Any], key: str, fixed: object) -> int:
    value = params.get(key)
    if value is None:
        if not isinstance(fixed, int):
            raise PluginError(f"{NAME}: the input's {key} is dynamic, so the plug-in must give {key!r}")
        value = fixed
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_MODEL_SIDE:
        raise PluginError(
            f"{NAME}: {key} must be an integer from 1 to {MAX_MODEL_SIDE} (the largest picture size the server's "
            f"decoding bounds are derived for), got {value!r}"
        )
    if isinstance(fixed, int) and fixed != value:
        raise PluginError(f"{NAME}: {key} is {value} but the model's input is {fixed} there")
    return value


def _number(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PluginError(f"{NAME}: {key} must be a finite number, got {value!r}")
    return float(value)


def _choice(params: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = params.get(key, allowed[0])
    if value not in allowed:
        raise PluginError(f"{NAME}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def configure(params: Mapping[str, Any], signature: Signature, labels: Sequence[str] | None) -> ImageClassifier:
    """The plug-in for a model with ``signature``, or PluginError saying what does not fit."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise PluginError(f"{NAME}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
    for key in ("input", "output"):
        if not isinstance(params.get(key), str):
            raise PluginError(f"{NAME}: {key!r} must name the model's {key} tensor")
    spec = signature.input(params["input"])
    if spec is None:
        names = ", ".join(t.name for t in signature.inputs)
        raise PluginError(f"{NAME}: the model has no input {params['input']!r} (its inputs: {names})")
    if len(signature.inputs) != 1:
        raise PluginError(
            f"{NAME}: a picture is all a caller sends, but the model takes {len(signature.inputs)} inputs"
        )
    # One grey channel: a fixed 1, or a dynamic dimension the picture's single channel fills.
    grey = spec.rank == INPUT_RANK and (spec.dims[1] == 1 or not isinstance(spec.dims[1], int))
    if spec.datatype != "FP32" or not grey:
        raise PluginError(
            f"{NAME}: the input must be FP32 [N, 1, height, width] (one grey channel), not {spec.describe()}"
        )
    if isinstance(spec.dims[0], int) and spec.dims[0] != 1:
        raise PluginError(f"{NAME}: the input's first dimension must be dynamic or 1, not {spec.dims[0]}")
    out = signature.output(params["output"])
    if out is None:
        names = ", ".join(t.name for t in signature.outputs)
        raise PluginError(f"{NAME}: the model has no output {params['output']!r} (its outputs: {names})")
    if out.datatype != "FP32" or out.rank != OUTPUT_RANK:
        raise PluginError(f"{NAME}: the output must be FP32 [N, classes], not {out.describe()}")
    classes = out.dims[1]
    if labels is not None and isinstance(classes, int) and len(labels) != classes:
        raise PluginError(f"{NAME}: {len(labels)} labels for an output of {classes} classes")
    std = _number(params, "std", 1.0)
    if std <= 0:
        raise PluginError(f"{NAME}: std must be above 0, got {std!r}")
    pre = Preprocessing(
        height=_side(params, "height", spec.dims[2]),
        width=_side(params, "width", spec.dims[3]),
        foreground=_choice(params, "foreground", FOREGROUNDS),
        mean=_number(params, "mean", 0.0),
        std=std,
    )
    return ImageClassifier(params["input"], params["output"], pre, _choice(params, "scores", SCORES))


__all__ = ["NAME", "ImageClassifier", "InputError", "configure"]
