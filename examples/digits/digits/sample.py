"""Write a held-out digit as a PNG, to try the server: ``python -m mlapp.sample digit.png``.

Dark ink on a light ground, scaled up, as a person would photograph or draw it;
the server's preprocessing turns it back into the model's input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mlapp.data import load_digits_dataset


def write_sample(path: Path, index: int = 0, seed: int = 0, scale: int = 16) -> int:
    """Write held-out digit ``index`` of the split made with ``seed``; return its true class."""
    data = load_digits_dataset(seed)
    if not 0 <= index < len(data.y_test):
        raise ValueError(f"--index must be between 0 and {len(data.y_test) - 1}")
    ink = np.clip(data.x_test[index, 0] * 255.0, 0, 255).astype(np.uint8)
    picture = Image.fromarray(255 - ink, mode="L")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    picture.save(path, format="PNG")
    return int(data.y_test[index])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlapp.sample", description=__doc__)
    parser.add_argument("out", type=Path, help="where to write the PNG")
    parser.add_argument("--index", type=int, default=0, help="which held-out digit (default 0)")
    args = parser.parse_args(argv)
    try:
        label = write_sample(args.out, args.index)
    except (ValueError, OSError) as e:
        print(f"mlapp.sample: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: a {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
