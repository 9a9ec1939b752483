"""Turn a picture into an image classifier's input, the way its training images looked.

The image-classifier plug-in (``image_classifier.py``) feeds a model grey pictures of its input's
height and width, scaled to [0, 1], then ``(x - mean) / std``. Its published ``foreground`` says
how the training images looked: ``light`` (a light subject on a dark ground, as the digits
example's) or ``dark``. People photograph dark ink on light paper and the like, so a picture whose
border says its ground is the other way round is inverted first; ``as-is`` never inverts.

What decoding a stranger's picture may cost
-------------------------------------------

Only PNG and JPEG, what ``/predict`` documents. A few lines here walk the
file's chunks or marker segments before Pillow sees it: they read the declared
size and refuse it over the caps before a pixel is decoded, and refuse what
Pillow 13 would decode without a word (truncated files, PNG CRC errors: see
``_png_for_pillow`` and ``_jpeg_size``). No other Pillow decoder is reached.

Caps: at most ``MAX_SIDE`` (8192) pixels a side and ``MAX_PIXELS`` (4096 x
3072, 12 Mi) in all, so that a 12 MP phone photo (4032 x 3024) fits. The side
cap keeps thin pictures (the 1 x 25,000,000 PNG) and the decoders' row
buffers small; the pixel cap bounds the rest.

Bytes per pixel, Pillow 13 (``src/libImaging/Storage.c``,
``ImagingNewPrologueSubtype``, ``pixelsize``): 1 for "1", "L", "P"; 2 for
"I;16"; 4 for "LA", "RGB", "RGBA", "CMYK" ("store in image32 memory"). PNG
decodes to 1, L, P, I;16, LA, RGB or RGBA (16-bit colour is narrowed to 8 bits,
``PngImagePlugin._MODES``); JPEG to L, RGB or CMYK. So at most 4 B/px.

One decode holds at most (model inputs up to ``MAX_MODEL_SIDE``, 28 x 28; input bytes aside):

- PNG: the decoded picture, 4 B/px, and its grey copy, 1 B/px: 60 MiB at the
  pixel cap. Greying runs one band of rows at a time (``_gray_in_bands``), so
  the conversions (RGBA, a white ground, their composite) hold ``_BAND_BYTES``
  of picture, not a second full-size copy; the file rebuilt for Pillow is at
  most the request body (8 MiB by default). About 73 MiB. The grey copy is
  kept at full size rather than reduced first (``Image.reduce``), because the
  answer then stays the one a full-size decode gives, to the bit: reducing
  before the BOX resize (as ``Image.resize(reducing_gap=4)`` does) moved it by
  up to 18/255 on a smooth 2047 x 1531 picture.
- JPEG: decoded reduced (``draft``: libjpeg's DCT scaling by 1/2, 1/4 or 1/8)
  to at least ``OVERSAMPLE`` times the model input a side; output and grey
  copy take 5 B/px / scale^2. A progressive or multi-scan JPEG also makes
  libjpeg hold every DCT coefficient of the full picture whatever the scale:
  2 bytes a pixel per component, 8 B/px for 4 components (libjpeg-turbo
  ``src/jdcoefct.c``); ``MAX_JPEG_COEFFICIENT_BYTES`` (64 MiB) caps that.
  At scale 1 a side is under 2 x 16 x 28 = 896 pixels, so the picture has at
  most 7.3 Mi pixels: 56 MiB of coefficients + 35 MiB = 91 MiB; at scale 1/2
  or less, 64 MiB + 15 MiB = 79 MiB. The answer differs from a full-size
  decode's by at most 2-3/255 (a colour JPEG drafted to "L" is its luma
  plane, and DCT scaling is not a box filter).

So ``DECODE_PEAK_BYTES`` = 100 MiB (91 MiB and a few MiB of libjpeg/zlib
buffers and bands; measured: 85 MiB for that thin progressive CMYK JPEG, 70
for an RGBA PNG at the pixel cap, 2 for a 12 MP baseline JPEG: see
tests/app/test_image.py). At most ``MAX_CONCURRENT_DECODES`` (2) decodes run
at once, in the server's decode thread pool; with the request body and its
multipart copy (2 x 8 MiB) each, decoding adds at most 2 x 116 = 232 MiB to a
server of 100-150 MiB: under 390 MiB of the pod's 512 MiB.

Time: each scan of a progressive JPEG is a pass over every coefficient (10-20
ms at the pixel cap), and scans can repeat (10,000 fit in 320 KB and took
73 s), so at most ``MAX_JPEG_SCANS`` (32 at the caps: 0.6 s); PNG chunks, JPEG
segments and stray bytes between them are capped because Pillow reads them one
at a time in Python (2 million empty JPEG comments took 1.6 s). An RGBA PNG at
the pixel cap decodes in about 0.2 s.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS: Final = ("PNG", "JPEG")
# The largest model input side the decode bounds below are derived for (a JPEG is drafted to at least
# OVERSAMPLE times it): a larger input makes libjpeg decode larger pictures at full scale, past
# DECODE_PEAK_BYTES.
MAX_MODEL_SIDE: Final = 28
FOREGROUNDS: Final = ("light", "dark", "as-is")
MAX_SIDE: Final = 8192
MAX_PIXELS: Final = 4096 * 3072
# What libjpeg may hold for a multi-scan JPEG: a 12 MP progressive 4:2:0 photo
# needs 36 MiB; 4:4:4 fits up to 10.7 MP, 4-component (CMYK) up to 8 MP.
MAX_JPEG_COEFFICIENT_BYTES: Final = 64 << 20
# A JPEG is decoded to at least this many pixels a side per model input pixel:
# at 4 the result differed from a full-size decode by up to 32/255, at 16 by 3.
OVERSAMPLE: Final = 16
# The server decodes pictures in a thread pool of this size, off the event loop;
# DECODE_PEAK_BYTES (derived above) holds for each of them.
MAX_CONCURRENT_DECODES: Final = 2
DECODE_PEAK_BYTES: Final = 100 << 20
_BAND_BYTES: Final = 1 << 20

# libjpeg's default progressive scripts have 6 scans for grey, 10 for YCbCr and
# 18 for CMYK (jcparam.c, jpeg_simple_progression).
MAX_JPEG_SCANS: Final = 32
# Marker segments (APPn, DQT, DHT, SOS...), PNG chunks and stray bytes between
# JPEG segments are read one at a time in Python by Pillow and by the walks here.
MAX_JPEG_SEGMENTS: Final = 1024
MAX_JPEG_STRAY_BYTES: Final = 1024
MAX_PNG_CHUNKS: Final = 10_000

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI: Final = b"\xff\xd8\xff"
# Chunks that make the pixels (PNG spec, 3rd ed., section 11): the rest (text,
# colour profiles, APNG frames...) is dropped before Pillow parses it.
_PNG_KEPT: Final = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IEND"})
# JPEG frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC) (ITU T.81, table B.1).
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_SOS: Final = 0xDA
_JPEG_EOI: Final = 0xD9
# Markers without a length (T.81 B.1.1.3): TEM and RST0-7.
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# A marker: 0xFF fill bytes, then a byte that is neither 0x00 (a stuffed 0xFF in
# entropy-coded data) nor 0xFF (T.81 B.1.1.2).
_JPEG_MARKER: Final = re.compile(rb"\xff+([\x01-\xfe])")
# The end of entropy-coded data: the first marker that is not RST0-7.
_JPEG_SCAN_END: Final = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")

_NOT_ACCEPTED: Final = "the upload is not an image this server reads: send a PNG or a JPEG"

# What Pillow 13 raises for a PNG or JPEG that passed the walks here. Seen
# (tests/app/test_image_fuzz.py and the tRNS tests in test_image.py):
# - OSError from ImageFile.load: "image file is truncated", "broken data
#   stream", "unrecognized data stream contents" (decoder error codes); and
#   UnidentifiedImageError, an OSError, when the plugin refuses the header
#   (bad bit depth, colour type): Image.open turns the plugins' SyntaxError,
#   IndexError, TypeError and struct.error into it (Image.py, ``_open_core``).
# - ValueError: "Truncated tRNS chunk" (PngStream.chunk_tRNS, not one of those
#   four), "palette index out of range" (converting a P picture whose tRNS is
#   longer than its palette).
# Not seen, caught because Pillow's plugins raise them where a change in Pillow
# could let them out: SyntaxError ("broken PNG file"), struct.error (short
# fields), EOFError (PNG chunk handlers at the end of the data).
# Not caught: MemoryError and anything else, a fault of ours or of the server's
# memory, which the caps are there to prevent; the server answers it 500.
_DECODER_ERRORS: Final = (OSError, SyntaxError, ValueError, struct.error, EOFError)


# An area of an image, (left, upper, right, lower), as Image.resize's box.
Box = tuple[float, float, float, float]


class InputError(ValueError):
    """The client sent something that is not a usable picture."""


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes one row of the model's input: its size, which way round, and its scaling."""

    height: int
    width: int
    foreground: str = "light"  # one of FOREGROUNDS
    mean: float = 0.0
    std: float = 1.0


def _damaged(why: str) -> InputError:
    return InputError(f"the image is damaged: {why}")


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise _damaged(f"it declares {width}x{height} pixels")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(f"the image is {width}x{height} pixels: each side must be at most {MAX_SIDE}")
    if width * height > MAX_PIXELS:
        raise InputError(f"the image is {width}x{height} pixels: at most {MAX_PIXELS} pixels in all (4096x3072)")


def _name(kind: bytes) -> str:
    return kind.decode("ascii", "backslashreplace")


def _png_for_pillow(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """The PNG with only the chunks that make its pixels, its IDAT data in one chunk; and its size.

    Refuses what Pillow 13 would decode without a word: a file cut after its
    image data (no IEND), cut inside the last IDAT's zlib checksum, or with bad
    CRCs in IDAT or IEND (``PngImageFile.load_read`` reads an IDAT's CRC and
    ignores it; ``load_end`` stops at the first unreadable chunk;
    ``src/libImaging/ZipDecode.c`` stops once every row is filled).
    """
    view = memoryview(data)
    kept: list[memoryview] = [view[:8]]
    idat: list[memoryview] = []
    size = (0, 0)
    pos = 8
    for index in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data):
            raise _damaged("the PNG is truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            raise _damaged(f"the PNG is truncated (inside its {_name(kind)} chunk)")
        if zlib.crc32(view[pos + 4 : end]) != int.from_bytes(view[end : end + 4], "big"):
            raise _damaged(f"the PNG's {_name(kind)} chunk fails its CRC check")
        if (index == 0) != (kind == b"IHDR"):
            raise _damaged("a PNG must have one IHDR chunk, first")
        if kind == b"IHDR":
            if length != 13:
                raise _damaged("the PNG's IHDR chunk is not 13 bytes")
            width, height = struct.unpack_from(">II", data, pos + 8)
            _check_size(width, height)
            size = (width, height)
        if kind == b"IDAT":
            idat.append(view[pos + 8 : end])
        elif kind in _PNG_KEPT:
            if kind == b"IEND":
                crc = zlib.crc32(b"IDAT")
                for part in idat:
                    crc = zlib.crc32(part, crc)
                parts: list[bytes | memoryview] = [*kept, struct.pack(">I4s", sum(map(len, idat)), b"IDAT"), *idat]
                parts += [struct.pack(">I", crc), view[pos : end + 4]]
                return b"".join(parts), size
            kept.append(view[pos : end + 4])
        pos = end + 4
    raise InputError(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")


def _coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """What libjpeg holds to decode a multi-scan JPEG: every DCT coefficient of the picture.

    64 two-byte coefficients per 8x8 block of each component, its blocks
    padded to its sampling factors (libjpeg-turbo ``src/jdcoefct.c``,
    ``jinit_d_coef_controller``: "a full-image virtual array for each
    component"; ``src/jdinput.c``, ``initial_setup``: width_in_blocks).
    """
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        across = -(-width * h // (8 * h_max))
        down = -(-height * v // (8 * v_max))
        total += -(-across // h) * h * (-(-down // v) * v) * 128
    return total


@dataclass(frozen=True)
class _JpegFrame:
    width: int
    height: int
    # What libjpeg holds if the file has more than one scan (see _coefficient_bytes).
    coefficient_bytes: int
    progressive: bool


def _jpeg_frame(code: int, segment: bytes) -> _JpegFrame:
    """A frame header (SOFn), ``segment`` from its length field on (T.81 B.2.2).

    Length, precision, height, width, component count, then 3 bytes per
    component: id, sampling factors (h << 4 | v), quantization table.
    """
    components = segment[7] if len(segment) >= 8 else 0
    if components == 0 or len(segment) != 8 + 3 * components:
        raise _damaged("the JPEG's frame header is malformed")
    sampling = [(byte >> 4, byte & 15) for byte in segment[9::3]]
    if not all(0 < h <= 4 and 0 < v <= 4 for h, v in sampling):
        raise _damaged("the JPEG's sampling factors are out of range")
    height, width = struct.unpack_from(">HH", segment, 3)
    _check_size(width, height)
    return _JpegFrame(width, height, _coefficient_bytes(width, height, sampling), code in _JPEG_PROGRESSIVE)


def _check_jpeg_end(frame: _JpegFrame | None, scans: int) -> _JpegFrame:
    if frame is None or scans == 0:
        raise _damaged("the JPEG ends before any image data")
    # libjpeg buffers every coefficient when there is more than one scan
    # (libjpeg-turbo src/jdinput.c: has_multiple_scans).
    if (frame.progressive or scans > 1) and frame.coefficient_bytes > MAX_JPEG_COEFFICIENT_BYTES:
        raise InputError(
            f"the image is {frame.width}x{frame.height} pixels in a progressive or multi-scan JPEG, which needs "
            f"{frame.coefficient_bytes >> 20} MiB to decode, over {MAX_JPEG_COEFFICIENT_BYTES >> 20} MiB: "
            "send it smaller or as a baseline JPEG"
        )
    return frame


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """The size a JPEG's frame header declares, once its markers show it complete and cheap to decode.

    Refuses a file with no end-of-image marker: Pillow 13 accepts one whose
    last segment after the scans is complete (``src/libImaging/JpegDecode.c``
    ignores ``jpeg_finish_decompress`` failing once every row is read).
    """
    frame: _JpegFrame | None = None
    scans = stray = 0
    pos = 2  # after SOI
    for _ in range(MAX_JPEG_SEGMENTS):
        marker = _JPEG_MARKER.search(data, pos)
        if marker is None:
            raise _damaged("the JPEG is truncated (no end-of-image marker)")
        stray += marker.end() - pos - 2  # junk and extra fill bytes before the marker
        if stray > MAX_JPEG_STRAY_BYTES:
            raise _damaged(f"the JPEG has more than {MAX_JPEG_STRAY_BYTES} bytes outside its segments")
        code, pos = marker[1][0], marker.end()
        if code == _JPEG_EOI:
            frame = _check_jpeg_end(frame, scans)
            return frame.width, frame.height
        if code in _JPEG_STANDALONE:
            continue
        end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 > len(data) or end > len(data):
            raise _damaged("the JPEG is truncated (inside a marker segment)")
        if code in _JPEG_SOF:
            if frame is not None:
                raise _damaged("the JPEG has more than one frame header")
            frame = _jpeg_frame(code, data[pos:end])
        elif code == _JPEG_SOS:
            scans += 1
            if frame is None:
                raise _damaged("the JPEG has a scan before its frame header")
            if scans > MAX_JPEG_SCANS:
                raise InputError(f"the JPEG has more than {MAX_JPEG_SCANS} scans")
            scan_end = _JPEG_SCAN_END.search(data, end)
            if scan_end is None:
                raise _damaged("the JPEG is truncated (inside its scan data)")
            end = scan_end.start()
        pos = end
    raise _damaged(f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")


def _gray(img: Image.Image) -> Image.Image:
    """``img`` as mode L, a transparent ground taken as white paper."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(ground, rgba).convert("L")
    return img.convert("L")


def _border_mean(gray: Image.Image) -> float:
    """Mean of the outermost rows and columns of an L image (corners counted twice), without a float copy of it all."""
    w, h = gray.size
    strips = [(0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h)]
    return float(np.concatenate([np.asarray(gray.crop(box), dtype=np.float32).ravel() for box in strips]).mean())


def _gray_in_bands(img: Image.Image) -> Image.Image:
    """``img`` as mode L, converted one band of rows at a time.

    The conversions of a band (RGBA, a white ground, their composite: up to
    13 B/px) are held for ``_BAND_BYTES`` of picture at a time, never for the
    whole; each pixel is converted exactly as the whole picture would be.
    """
    if img.mode == "L":
        return img
    w, h = img.size
    out = Image.new("L", img.size)
    rows = max(1, _BAND_BYTES // (4 * w))
    for top in range(0, h, rows):
        out.paste(_gray(img.crop((0, top, w, min(h, top + rows)))), (0, top))
    return out


def _to_input(
    gray: Image.Image, border_mean: float, pre: Preprocessing, extent: Box | None = None
) -> npt.NDArray[np.float32]:
    resized = gray.resize((pre.width, pre.height), Image.Resampling.BOX, box=extent)
    arr = np.asarray(resized, dtype=np.float32)
    light_ground = border_mean > 127.5
    if (pre.foreground == "light" and light_ground) or (pre.foreground == "dark" and not light_ground):
        arr = 255.0 - arr
    x = arr / 255.0
    if pre.mean != 0.0 or pre.std != 1.0:
        x = (x - np.float32(pre.mean)) / np.float32(pre.std)
    return x.reshape(1, 1, pre.height, pre.width)


def image_bytes_to_input(data: bytes, pre: Preprocessing) -> npt.NDArray[np.float32]:
    """PNG or JPEG bytes -> float32 ``[1, 1, H, W]``; anything else, too large or damaged -> ``InputError``."""
    if not data:
        raise InputError("the image is empty")
    if data.startswith(_PNG_MAGIC):
        data, size = _png_for_pillow(data)
    elif data.startswith(_JPEG_SOI):
        size = _jpeg_size(data)
    else:
        raise InputError(_NOT_ACCEPTED)
    least = (pre.width * OVERSAMPLE, pre.height * OVERSAMPLE)
    try:
        # formats=: the walks above already chose; no other plugin may try.
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
            if img.size != size:
                raise _damaged(f"Pillow reads {img.size[0]}x{img.size[1]} pixels, the header says {size[0]}x{size[1]}")
            # JPEG only (Image.draft does nothing for PNG): libjpeg scales by
            # 1/2, 1/4 or 1/8 while decoding, keeping at least ``least``
            # (JpegImagePlugin.JpegImageFile.draft); a colour file decodes to
            # its luma plane directly.
            drafted = img.draft("L", least)
            img.load()
            gray = _gray_in_bands(img)
            border = _border_mean(gray)
            extent = drafted[1] if drafted else None
    except InputError:
        raise
    except UnidentifiedImageError as e:  # its message names the BytesIO object, of no use to the caller
        raise _damaged("Pillow cannot read its header") from e
    except _DECODER_ERRORS as e:
        raise _damaged(str(e)) from e
    return _to_input(gray, border, pre, extent)


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
    return _to_input(gray, _border_mean(gray), pre)
