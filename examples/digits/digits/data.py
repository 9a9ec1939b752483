"""Training data: scikit-learn's bundled digits, or MNIST-format IDX files.

Both come out the same way: images as float32 ``[N, 1, H, W]`` scaled to
[0, 1] with a light digit on a dark background, labels as int64 ``[N]``. The
server's image-classifier plug-in reproduces that scaling from a picture, as
serving.json tells it (train.serving): grey, 0-1, light on dark.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class DataError(Exception):
    """The training data is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    num_classes: int
    # The raw pixel value that maps to 1.0 (16 for digits, 255 for MNIST).
    pixel_max: float

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])


def load_digits_dataset(seed: int, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, values 0-16), split stratified by ``seed``."""
    from sklearn.datasets import load_digits  # noqa: PLC0415 - heavy, trainer only

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        test_idx.extend(idx[: max(1, round(len(idx) * test_fraction))].tolist())
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    x = (images / 16.0)[:, None, :, :].astype(np.float32)
    return Dataset(
        name="sklearn-digits",
        x_train=x[~is_test],
        y_train=labels[~is_test],
        x_test=x[is_test],
        y_test=labels[is_test],
        num_classes=10,
        pixel_max=16.0,
    )


_IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """Read one IDX file (gzip-compressed if its name ends in ``.gz``)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{type_code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes of data) but the file holds {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(data_dir: Path, prefix: str, kind: str) -> Path:
    # Both spellings exist in the wild: train-images-idx3-ubyte and train-images.idx3-ubyte.
    ndim = 3 if kind == "images" else 1
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = data_dir / f"{prefix}-{kind}{sep}idx{ndim}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    raise DataError(f"no {prefix} {kind} in {data_dir}: expected {prefix}-{kind}-idx{ndim}-ubyte[.gz]")


def _load_split(data_dir: Path, prefix: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    images = read_idx(_find(data_dir, prefix, "images"))
    labels = read_idx(_find(data_dir, prefix, "labels"))
    if images.ndim != 3:
        raise DataError(f"{prefix} images must be 3-D [N, H, W], got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{prefix} labels must be 1-D [N], got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{prefix}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{prefix}: no examples")
    if images.dtype != np.uint8:
        raise DataError(f"{prefix} images must be unsigned bytes (IDX type 0x08)")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)


def load_idx_dataset(data_dir: Path) -> Dataset:
    """MNIST-format files in ``data_dir``: train-* for training, t10k-* held out."""
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a directory")
    x_train, y_train = _load_split(data_dir, "train")
    x_test, y_test = _load_split(data_dir, "t10k")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"train images are {x_train.shape[1:]} but t10k are {x_test.shape[1:]}")
    if min(int(y_train.min()), int(y_test.min())) < 0:
        raise DataError("labels must be non-negative class indices")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(
        name=f"idx:{data_dir.name}",
        x_train=(x_train.astype(np.float32) / 255.0)[:, None, :, :],
        y_train=y_train,
        x_test=(x_test.astype(np.float32) / 255.0)[:, None, :, :],
        y_test=y_test,
        num_classes=num_classes,
        pixel_max=255.0,
    )
