"""Mutated pictures in every format Pillow writes, and headers of some it only reads: a /predict body never gets a 5xx.

Each case is built from its own ``random.Random(SEED, case number)``; a failure
names the case number, the seed picture and the mutation, so that one case can
be rebuilt alone with ``_mutate``.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from mlapp.plugins.image import Preprocessing
from mlapp.plugins.image_classifier import ImageClassifier
from mlapp.serve import errors

from .test_image import png_chunk

SEED = 12
# PNG and JPEG get more: they are the only ones that reach a decoder now.
MUTATIONS_PER_PICTURE = 40
MUTATIONS_PER_PNG_OR_JPEG = 300
# Places where a cut is tried for every picture, as fractions of its length, on
# top of the random cuts among the mutations.
CUTS = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
# Formats Pillow can write that are not fuzzed here, and why.
NOT_WRITTEN = {
    "EPS": "Pillow writes it through Ghostscript",
    "BUFR": "stub plugin: saving needs an application-installed handler",
    "GRIB": "stub plugin: saving needs an application-installed handler",
    "HDF5": "stub plugin: saving needs an application-installed handler",
    "WMF": "stub plugin: saving needs an application-installed handler",
}
BOUNDARY = "fuzz-7d0c2b9e41a3f865"
# The image-classifier plug-in of a digits-sized model and of the largest input it takes.
PLUGINS = tuple(
    ImageClassifier("input", "probabilities", Preprocessing(height=side, width=side), "probabilities")
    for side in (8, 28)
)


def _picture(mode: str) -> Image.Image:
    """A 20x14 dark stroke on light paper with a gradient, in ``mode``."""
    y, x = np.mgrid[0:14, 0:20]
    gray = (200 + 2 * x - 3 * y).astype(np.uint8)
    gray[3:11, 8:11] = 30
    rgb = Image.merge("RGB", [Image.fromarray(gray), Image.fromarray(255 - gray), Image.fromarray(gray)])
    if mode == "RGBA":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(gray))
        return rgba
    if mode == "P":
        return rgb.quantize(8)
    return rgb.convert(mode)


def _saved(fmt: str, mode: str = "", **params: object) -> bytes | None:
    """The picture written as ``fmt`` in ``mode`` (or the first mode the writer takes), None if it takes none."""
    for candidate in [mode] if mode else ["RGB", "L", "P", "1", "RGBA", "F"]:
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 13 deprecates writing IM
                _picture(candidate).save(buf, fmt, **params)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return buf.getvalue()
    return None


# Adam7 passes: first column, first row, column step, row step (PNG spec, 3rd ed., 8.2).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _interlaced_png(img: Image.Image) -> bytes:
    """An Adam7-interlaced 8-bit RGBA PNG of ``img`` (Pillow reads interlaced PNGs but does not write them)."""
    pixels = np.asarray(img.convert("RGBA"))
    raw = b"".join(
        b"\x00" + row.tobytes()  # filter type 0 on every row
        for x0, y0, dx, dy in ADAM7
        if x0 < img.width and y0 < img.height
        for row in pixels[y0::dy, x0::dx]
    )
    header = struct.pack(">IIBBBBB", img.width, img.height, 8, 6, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        png_chunk(kind, data) for kind, data in ((b"IHDR", header), (b"IDAT", zlib.compress(raw)), (b"IEND", b""))
    )


def _spider_header(istack: float) -> list[float]:
    """A SPIDER 2-D image header, 64x64, 256-byte records (SpiderImagePlugin.isSpiderHeader)."""
    h = [0.0] * 27  # h[i] is the format's field i + 1
    h[0], h[1], h[4], h[11] = 1, 64, 1, 64  # slices, rows, iform (2-D), columns
    h[12], h[21], h[22] = 1, 256, 256  # header records, header bytes, record bytes
    h[23] = istack
    return h


# Headers of formats Pillow 13 opens but cannot write, each declaring a picture,
# as a client might send them (the old decoder tried every one of these).
READ_ONLY_HEADERS = {
    "PSD": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + b"\x00" * 16,
    "SUN": struct.pack(">8I", 0x59A66A95, 64, 64, 8, 4096, 1, 0, 0) + b"\x80" * 64,
    "XPM": b'/* XPM */\nstatic char *x[] = {\n"2 2 1 1",\n"a c #000000",\n"aa",\n"aa"};\n',
    "FITS": b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8" + b" " * 49,
    "FLI": struct.pack("<IHHHHHI", 1000, 0xAF12, 1, 64, 64, 8, 0) + b"\x00" * 112,
    "GBR": struct.pack(">IIIII", 28, 2, 16, 16, 1) + b"GIMP" + struct.pack(">I", 10) + b"x\x00" + b"\x80" * 256,
    "CUR": b"\x00\x00\x02\x00\x01\x00" + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 1, 40, 22) + b"\x00" * 40,
    "DCX": struct.pack("<II", 987654321, 12) + b"\x00" * 16,
    "PIXAR": b"\x80\xe8\x00\x00" + b"\x00" * 412 + struct.pack("<HH", 64, 64) + b"\x00" * 92,
    "MCIDAS": b"\x00" * 7 + b"\x04" + struct.pack(">62I", *([1] * 62)),
    "XVTHUMB": b"P7 332\n#XVVERSION\n#END_OF_COMMENTS\n64 64 255\n" + b"\x00" * 64,
    "MPEG": b"\x00\x00\x01\xb3" + b"\x04\x00\x40\x00" + b"\x00" * 8,
    "DDS DX10": b"DDS " + struct.pack("<7I", 124, 0x1007, 64, 64, 0, 0, 1) + b"\x00" * 44
    + struct.pack("<2I4s5I", 32, 4, b"DX10", 0, 0, 0, 0, 0) + b"\x00" * 20 + struct.pack("<I", 999),
    "BLP1 JPEG": b"BLP1" + struct.pack("<5I", 0, 0, 64, 64, 0) + b"\x00" * 128 + struct.pack("<I", 4) + b"\xff\xd8",
    # SpiderImagePlugin checks some header fields, then int()s others: an infinite stack number.
    "SPIDER": struct.pack(">27f", *_spider_header(istack=float("inf"))),
}  # fmt: skip


def seed_pictures() -> dict[str, bytes]:
    """Every format Pillow writes, PNG and JPEG in each mode and variant they have, and the read-only headers."""
    Image.init()  # Image.SAVE fills as plugins load
    pictures: dict[str, bytes] = {}
    for fmt in sorted(set(Image.SAVE) - set(NOT_WRITTEN)):
        data = _saved(fmt)
        assert data is not None, f"Pillow writes {fmt} but took none of the modes tried"
        pictures[fmt] = data
    variants: dict[str, tuple[str, str, dict[str, object]]] = {
        "PNG 1": ("PNG", "1", {}),
        "PNG L": ("PNG", "L", {}),
        "PNG LA": ("PNG", "LA", {}),
        "PNG P": ("PNG", "P", {}),
        "PNG P tRNS": ("PNG", "P", {"transparency": 2}),
        "PNG RGBA": ("PNG", "RGBA", {}),
        "PNG I;16": ("PNG", "I;16", {}),
        "JPEG L": ("JPEG", "L", {}),
        "JPEG CMYK": ("JPEG", "CMYK", {}),
        "JPEG progressive": ("JPEG", "RGB", {"progressive": True}),
        "JPEG 4:4:4 restart": ("JPEG", "RGB", {"subsampling": 0, "restart_marker_blocks": 1}),
        "JPEG EXIF": ("JPEG", "RGB", {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"}),
    }
    for name, (fmt, mode, params) in variants.items():
        data = _saved(fmt, mode, **params)
        assert data is not None, name
        pictures[name] = data
    pictures["PNG RGBA interlaced (hand-built)"] = _interlaced_png(_picture("RGBA"))
    pictures.update({f"{name} (hand-built)": header for name, header in READ_ONLY_HEADERS.items()})
    return pictures


# --- mutations: each takes the picture and a Random, returns the mutated bytes and a short description.


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole chunk, as far as the lengths read."""
    spans, pos = [], 8
    while pos + 12 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        spans.append((pos, min(end, len(data))))
        pos = end
    return spans


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each marker segment before the first scan's data, and of that scan header."""
    spans, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xD9, 0x00):
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        spans.append((pos, min(end, len(data))))
        if data[pos + 1] == 0xDA:
            break
        pos = end
    return spans


def _segments(data: bytes) -> list[tuple[int, int]]:
    if data.startswith(b"\x89PNG"):
        return _png_chunks(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_segments(data)
    return []


def _fix_png_crc(data: bytearray, start: int, end: int) -> None:
    if data[:4] == b"\x89PNG" and end - start >= 12:
        data[end - 4 : end] = struct.pack(">I", zlib.crc32(data[start + 4 : end - 4]))


def bit_flips(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    where = [rng.randrange(len(out)) for _ in range(rng.randint(1, 8))]
    for i in where:
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out), f"bit flips at {where}"


def header_overwrite(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    i = rng.randrange(min(len(out), 64))
    value = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)])
    out[i] = value
    return bytes(out), f"byte {i} := {value:#x}"


def size_inflation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A size field made large: PNG IHDR or JPEG SOF where there is one (CRC kept valid), else any 16/32-bit field."""
    out = bytearray(data)
    big = rng.choice([0, 1, 4097, 8192, 8193, 12_582_913, 65_535, 2**31 - 1, 2**32 - 1])
    if data.startswith(b"\x89PNG") and len(data) >= 33:
        field = rng.choice([16, 20])
        out[field : field + 4] = struct.pack(">I", big)
        _fix_png_crc(out, 8, 33)
        return bytes(out), f"IHDR {'width' if field == 16 else 'height'} := {big}"
    sofs = [s for s, _ in _jpeg_segments(data) if 0xC0 <= data[s + 1] <= 0xC2]
    if sofs:
        field = sofs[0] + rng.choice([5, 7])
        out[field : field + 2] = struct.pack(">H", big & 0xFFFF)
        return bytes(out), f"SOF {'height' if field == sofs[0] + 5 else 'width'} := {big & 0xFFFF}"
    width = rng.choice([2, 4])
    at = rng.randrange(max(1, min(len(out), 32) - width))
    order = rng.choice([">", "<"])
    out[at : at + width] = struct.pack(
        order + ("H" if width == 2 else "I"), big & (0xFFFF if width == 2 else 0xFFFFFFFF)
    )
    return bytes(out), f"{8 * width}-bit {order} field at {at} := {big}"


def truncation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(1, len(data))
    return data[:cut], f"cut to {cut} of {len(data)} bytes"


def duplication(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A chunk or marker segment repeated (or any slice, for other formats)."""
    spans = _segments(data)
    if spans:
        start, end = rng.choice(spans)
        times = rng.choice([1, 2, 40])
    else:
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.randint(1, 64))
        times = 1
    return data[:end] + data[start:end] * times + data[end:], f"bytes {start}:{end} repeated {times}x"


def flip_inside_segment(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Bytes changed inside one JPEG segment or PNG chunk (CRC made valid again, so the damage reaches the decoder)."""
    spans = [(start, end) for start, end in _segments(data) if end - start > 12]
    if not spans:
        return bit_flips(data, rng)
    start, end = rng.choice(spans)
    out = bytearray(data)
    where = [rng.randrange(start + 4, end - 4) for _ in range(rng.randint(1, 4))]
    for i in where:
        out[i] = rng.choice([0x00, 0xFF, rng.randrange(256)])
    _fix_png_crc(out, start, end)
    return bytes(out), f"bytes {where} in the segment at {start}:{end}"


def resize_segment(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One PNG chunk or JPEG segment made shorter or longer, its length field (and CRC) to match."""
    spans = _segments(data)
    if not spans:
        return truncation(data, rng)
    start, end = rng.choice(spans)
    png = data.startswith(b"\x89PNG")
    head, tail = (start + 8, end - 4) if png else (start + 4, end)
    body = data[head:tail]
    body = body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + bytes(rng.choice([1, 3, 300]))
    if png:
        kind = data[start + 4 : start + 8]
        segment = png_chunk(kind, body)
    else:
        segment = data[start : start + 2] + struct.pack(">H", min(len(body) + 2, 0xFFFF)) + body
    return data[:start] + segment + data[end:], f"segment at {start}:{end} resized to {len(body)} bytes"


MUTATIONS: tuple[Callable[[bytes, random.Random], tuple[bytes, str]], ...] = (
    bit_flips,
    header_overwrite,
    size_inflation,
    truncation,
    duplication,
    flip_inside_segment,
    resize_segment,
)


@dataclass(frozen=True)
class Case:
    number: int
    picture: str
    description: str
    data: bytes


def _mutate(number: int, picture: str, data: bytes) -> Case:
    rng = random.Random(f"{SEED}-{number}")  # noqa: S311 - a reproducible fuzz, not a secret
    mutation = MUTATIONS[rng.randrange(len(MUTATIONS))]
    mutated, what = mutation(data, rng)
    return Case(number, picture, f"{mutation.__name__}: {what}", mutated)


def cases() -> Iterator[Case]:
    number = 0
    for picture, data in seed_pictures().items():
        yield Case(number, picture, "unchanged", data)
        number += 1
        for fraction in CUTS:
            cut = max(1, int(len(data) * fraction))
            yield Case(number, picture, f"cut to {cut} of {len(data)} bytes", data[:cut])
            number += 1
        decoded = data.startswith((b"\x89PNG", b"\xff\xd8"))
        for _ in range(MUTATIONS_PER_PNG_OR_JPEG if decoded else MUTATIONS_PER_PICTURE):
            yield _mutate(number, picture, data)
            number += 1


def multipart(image: bytes) -> tuple[bytes, str]:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="f"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def outcome(case: Case) -> str | None:
    """None if /predict would answer this case with a model input or a 4xx; else what went wrong."""
    plugin = PLUGINS[case.number % len(PLUGINS)]
    pre = plugin.pre
    try:
        x = plugin.parse(*multipart(case.data))
    except Exception as e:  # anything the server would answer 500 with is the finding
        status = errors.status_of(e)
        if status is None or not 400 <= status < 500:
            return f"{type(e).__name__}: {e} -> {status or 500}"
        return None
    if x.dtype != np.float32 or x.shape != (1, 1, pre.height, pre.width):
        return f"returned {x.dtype} {x.shape}"
    if not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        return f"returned values outside [0, 1]: {x.min()}..{x.max()}"
    return None


def test_every_format_pillow_writes_is_fuzzed_or_skipped_with_a_reason() -> None:
    pictures = seed_pictures()  # loads every plugin: Image.SAVE is complete after it
    assert set(NOT_WRITTEN) <= set(Image.SAVE), "a skipped format is gone from Pillow: drop it from NOT_WRITTEN"
    written = {name for name in pictures if name in Image.SAVE}
    assert written == set(Image.SAVE) - set(NOT_WRITTEN)


# Pillow warns about what it skips in a damaged file ("Corrupt EXIF data", "malformed MPO file").
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mutated_pictures_get_a_model_input_or_a_4xx() -> None:
    failures, total = [], 0
    for case in cases():
        total += 1
        problem = outcome(case)
        if problem is not None:
            failures.append(f"case {case.number} (SEED={SEED}, {case.picture}, {case.description}): {problem}")
    assert total > 2000, f"only {total} cases"
    assert not failures, f"{len(failures)} of {total} cases would answer 5xx:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("picture", ["PNG", "JPEG", "PNG RGBA", "JPEG progressive"])
def test_the_unchanged_pictures_are_read(picture: str) -> None:
    """The seeds the mutations start from are good pictures: what the fuzz breaks, it breaks from valid files."""
    data = seed_pictures()[picture]
    x = PLUGINS[1].parse(*multipart(data))
    assert x.shape == (1, 1, 28, 28)
