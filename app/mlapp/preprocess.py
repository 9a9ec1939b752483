"""Turn a picture of a digit into the model's input, the way the training data looked.

The training images are a light digit on a dark ground, scaled to [0, 1]
(``metadata.json`` -> ``input.preprocessing``). People mostly send dark ink on
light paper, so a picture whose border is light on average is inverted first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

# Far more than any digit photo needs; refuses decompression bombs early.
MAX_PIXELS = 25_000_000


class InputError(ValueError):
    """The client sent something that is not a usable picture."""


@dataclass(frozen=True)
class Preprocessing:
    height: int
    width: int

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Preprocessing:
        pre = meta["input"]["preprocessing"]
        return cls(height=int(pre["height"]), width=int(pre["width"]))


def _to_input(gray: Image.Image, pre: Preprocessing) -> npt.NDArray[np.float32]:
    full = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([full[0], full[-1], full[:, 0], full[:, -1]])
    resized = gray.resize((pre.width, pre.height), Image.Resampling.BOX)
    arr = np.asarray(resized, dtype=np.float32)
    if float(border.mean()) > 127.5:
        arr = 255.0 - arr
    return (arr / 255.0).reshape(1, 1, pre.height, pre.width)


def image_bytes_to_input(data: bytes, pre: Preprocessing) -> npt.NDArray[np.float32]:
    """PNG/JPEG/... bytes of any size -> float32 ``[1, 1, H, W]``."""
    if not data:
        raise InputError("the image is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"the image has more than {MAX_PIXELS} pixels")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                # A transparent ground is paper: flatten onto white.
                rgba = img.convert("RGBA")
                ground = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                gray = Image.alpha_composite(ground, rgba).convert("L")
            else:
                gray = img.convert("L")
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InputError("the upload is not an image Pillow can read (PNG, JPEG, ...)") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"the image is damaged: {e}") from e
    return _to_input(gray, pre)


def pixels_to_input(pixels: object, pre: Preprocessing) -> npt.NDArray[np.float32]:
    """A 2-D list of grayscale values 0-255 (any size) -> float32 ``[1, 1, H, W]``."""
    if not isinstance(pixels, list) or not pixels or not all(isinstance(r, list) for r in pixels):
        raise InputError("'pixels' must be a non-empty 2-D array (a list of rows) of numbers 0-255")
    try:
        arr = np.asarray(pixels, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise InputError("'pixels' must be a rectangular 2-D array of numbers 0-255") from e
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"'pixels' must be 2-D (rows of numbers), got {arr.ndim} dimensions")
    if arr.size > MAX_PIXELS:
        raise InputError(f"'pixels' has more than {MAX_PIXELS} values")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise InputError("'pixels' values must be numbers from 0 to 255")
    gray = Image.fromarray(np.rint(arr).astype(np.uint8))  # 2-D uint8 is mode "L"
    return _to_input(gray, pre)
