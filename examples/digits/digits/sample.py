"""Write a held-out digit as a PNG, to try the server: ``python -m digits.sample`` (``build/digit.png``).

Written under ``build/`` unless a path is given: the repository ignores that
directory, so the picture never shows up as a file to commit.

Dark ink on a light ground, scaled up, as a person would photograph or draw it;
the server's image-classifier plug-in turns it back into the model's input.
Needs Pillow (the dev virtualenv has it; the trainer image does not, and needs
it not).

The default digit is held-out example 263 of the split ``make train`` trains
on (seed 0): a 0, which the model ``make train`` makes (10 epochs, batch 32,
learning rate 0.003, seed 0) calls a 0 with probability 0.9999998 from this
very PNG, the most confident of its right answers on a held-out 0. Example 0,
the default before, is a 5 that model calls a 9 (p 0.50): a newcomer's first
answer was wrong. tests/examples/digits/test_sample.py trains as ``make train``
does and holds the choice to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import load_digits_dataset

# Held-out example 263 (seed 0's split): see the module's docstring for why this one.
DEFAULT_INDEX = 263
# Relative to where it runs, the repository's root in every command the READMEs give; /build/ is in .gitignore.
DEFAULT_OUT = Path("build") / "digit.png"


def write_sample(path: Path, index: int = DEFAULT_INDEX, seed: int = 0, scale: int = 16) -> int:
    """Write held-out digit ``index`` of the split made with ``seed``; return its true class."""
    data = load_digits_dataset(seed)
    if not 0 <= index < len(data.y_test):
        raise ValueError(f"--index must be between 0 and {len(data.y_test) - 1}")
    ink = np.clip(data.x_test[index, 0] * 255.0, 0, 255).astype(np.uint8)
    picture = Image.fromarray(255 - ink, mode="L")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    return int(data.y_test[index])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m digits.sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out", type=Path, nargs="?", default=DEFAULT_OUT, help=f"where to write the PNG (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--index", type=int, default=DEFAULT_INDEX, help=f"which held-out digit (default {DEFAULT_INDEX})"
    )
    args = parser.parse_args(argv)
    try:
        label = write_sample(args.out, args.index)
    except (ValueError, OSError) as e:
        print(f"digits.sample: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: a {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
