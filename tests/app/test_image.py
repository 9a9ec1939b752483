"""The server image (its Dockerfile and requirements: static checks, no Docker engine here),
and the pictures the server reads (``mlapp.plugins.image``): every bound on decoding one, broken.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile

from mlapp.plugins import image as pictures
from mlapp.plugins.image import InputError, Preprocessing, image_bytes_to_input
from tests import dockerfiles

from .helpers import APP, app_env

DOCKERFILE = APP / "Dockerfile"


def stages() -> dict[str, list[str]]:
    return dockerfiles.stages(DOCKERFILE)


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [dockerfiles.hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_server_runs_as_numeric_non_root_with_the_right_command() -> None:
    """The trainer's image is the digits example's own (tests/examples/digits/test_image.py)."""
    s = stages()
    assert sorted(s) == ["base", "server", "server-deps"], "app/Dockerfile builds the server alone"
    server = s["server"]
    users = [line for line in server if line.startswith("USER ")]
    assert users, "server sets no USER"
    uid = users[-1].split()[1].split(":")[0]
    assert uid.isdigit(), f"server: USER {uid} is not numeric"
    assert int(uid) != 0, "server runs as root"
    assert 'CMD ["python", "-m", "mlapp.serve"]' in server
    assert "EXPOSE 8080 9090" in server
    base = " ".join(s["base"])
    assert "PYTHONDONTWRITEBYTECODE=1" in base
    assert "PYTHONUNBUFFERED=1" in base


def test_server_image_installs_no_torch_and_no_compilers() -> None:
    s = stages()
    server_build = " ".join(s["server-deps"] + s["server"])
    assert "requirements-server.txt" in server_build
    assert not re.search(r"\b(torch|gcc|g\+\+|build-essential|apt-get)\b", server_build)
    server_reqs = (APP / "requirements-server.txt").read_text(encoding="utf-8")
    assert not re.search(r"^(torch|nvidia|triton)", server_reqs, re.MULTILINE)


@pytest.mark.parametrize("name", ["requirements-server.txt", "requirements-test.txt"])
def test_requirements_are_pinned(name: str) -> None:
    for raw in (APP / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+]*", line), f"{name}: {line}"


def test_no_secrets_baked_in() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "MLAPP_AUTH" not in text
    assert not re.search(r"(?i)(password|secret|token)\s*=", text)


def test_the_server_never_imports_torch() -> None:
    code = (
        "import sys, mlapp.serve, mlapp.client;"
        "bad = sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules);"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=app_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- The pictures the server reads: mlapp.plugins.image ----------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIGIT = Preprocessing(height=28, width=28)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(
    width: int, height: int, color_type: int = 6, idat: bytes = b"", extra: tuple[bytes, ...] = ()
) -> bytes:
    """A PNG declaring ``width`` x ``height`` 8-bit pixels, with ``idat`` (a few bytes of zlib) as its only data."""
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        PNG_MAGIC
        + png_chunk(b"IHDR", header)
        + b"".join(extra)
        + png_chunk(b"IDAT", idat or zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def saved(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def digit_picture(width: int, height: int, mode: str) -> Image.Image:
    """Dark strokes on light paper with some texture, ``width`` x ``height``, in ``mode``."""
    gray = (180 + 60 * np.outer(np.cos(np.arange(height) / 11.0), np.sin(np.arange(width) / 7.0))).astype(np.uint8)
    gray[height // 4 : 3 * height // 4, width // 2 - width // 10 : width // 2 + width // 10] = 20
    L = Image.fromarray(gray)
    rgb = Image.merge("RGB", (L, L.point(lambda v: 255 - v // 2), L))
    if mode == "RGBA":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray((255 - gray // 2).astype(np.uint8)))
        return rgba
    if mode == "LA":
        return Image.merge("LA", (L, Image.fromarray((255 - gray // 2).astype(np.uint8))))
    if mode == "P":
        return rgb.quantize(64)
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    return rgb.convert(mode)


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a JPEG Pillow wrote, scans with their entropy-coded data."""
    spans, pos = [], 2
    while data[pos + 1] != 0xD9:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDA:
            found = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, end)
            assert found is not None
            end = found.start()
        spans.append((data[pos + 1], pos, end))
        pos = end
    return spans


def full_size_reference(data: bytes, pre: Preprocessing) -> npt.NDArray[np.float32]:
    """What the server answered before decoding was bounded: the whole picture greyed at full size, BOX-resized."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            gray = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("L")
        else:
            gray = img.convert("L")
    full = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([full[0], full[-1], full[:, 0], full[:, -1]])
    arr = np.asarray(gray.resize((pre.width, pre.height), Image.Resampling.BOX), dtype=np.float32)
    if float(border.mean()) > 127.5:
        arr = 255.0 - arr
    return (arr / 255.0).reshape(1, 1, pre.height, pre.width)


def refused(data: bytes, pre: Preprocessing = DIGIT) -> str:
    with pytest.raises(InputError) as caught:
        image_bytes_to_input(data, pre)
    return str(caught.value)


@pytest.fixture
def no_pillow_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow may not even open the file: what is refused is refused from its header."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open was called for a picture the header already refuses")

    monkeypatch.setattr(Image, "open", forbidden)


@pytest.mark.usefixtures("no_pillow_decoding")
def test_a_side_over_the_cap_is_refused_from_the_header() -> None:
    # 1 x 12,000,000 is under the pixel cap: only the side cap refuses it.
    thin = png_by_hand(1, 12_000_000)
    assert pictures.MAX_PIXELS >= 12_000_000
    assert "each side must be at most 8192" in refused(thin)
    # The measured attack: a few dozen bytes declaring 1 x 25,000,000 RGBA (1.6 GiB peak, 2.5 s before).
    attack = png_by_hand(1, 25_000_000)
    assert len(attack) < 80
    assert "1x25000000 pixels" in refused(attack)


@pytest.mark.usefixtures("no_pillow_decoding")
def test_pixels_over_the_cap_are_refused_from_the_header() -> None:
    over = png_by_hand(4097, 3072)  # both sides under MAX_SIDE
    assert "at most 12582912 pixels" in refused(over)
    # The measured attack: 5000 x 5000 RGBA, 97 KB (530 MiB before).
    assert "5000x5000 pixels" in refused(png_by_hand(5000, 5000))
    sof = saved(Image.new("L", (16, 16)), "JPEG")
    at = next(start for marker, start, _ in jpeg_segments(sof) if marker == 0xC0)
    big = sof[: at + 5] + struct.pack(">HH", 3072, 4097) + sof[at + 9 :]
    assert "at most 12582912 pixels" in refused(big)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("DDS", "RGB"), ("BLP", "P"),
     ("SPIDER", "F"), ("ICO", "RGBA"), ("QOI", "RGB"), ("PPM", "L"), ("JPEG2000", "RGB")],
)  # fmt: skip
def test_formats_other_than_png_and_jpeg_are_refused_naming_those(fmt: str, mode: str) -> None:
    data = saved(digit_picture(32, 32, mode), fmt)
    with Image.open(io.BytesIO(data)) as img:  # a good file: Pillow itself reads it
        img.load()
    message = refused(data)
    assert "not an image this server reads" in message
    assert "PNG" in message
    assert "JPEG" in message


def _png_parts(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Start and end of each chunk of a PNG with one chunk of each kind."""
    parts, pos = {}, 8
    while pos < len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        parts[data[pos + 4 : pos + 8]] = (pos, end)
        pos = end
    return parts


GREY_4X4 = zlib.compress(b"\x00\x80\x80\x80\x80" * 4)  # 4 rows: filter byte 0, 4 grey pixels
GOOD_PNG = saved(digit_picture(64, 48, "RGB"), "PNG")
GOOD_JPEG = saved(digit_picture(64, 48, "RGB"), "JPEG")
_IDAT = _png_parts(GOOD_PNG)[b"IDAT"]
_IEND = _png_parts(GOOD_PNG)[b"IEND"]


def test_pillow_is_asked_for_png_and_jpeg_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the magic-number check, Image.open itself may try no other plugin (its ``formats``)."""
    asked: list[object] = []
    image_open = Image.open

    def recording(fp: io.BytesIO, mode: str = "r", formats: tuple[str, ...] | None = None) -> ImageFile.ImageFile:
        asked.append(formats)
        return image_open(fp, "r", formats)

    monkeypatch.setattr(Image, "open", recording)
    image_bytes_to_input(GOOD_PNG, DIGIT)
    image_bytes_to_input(GOOD_JPEG, DIGIT)
    assert asked == [("PNG", "JPEG")] * 2


# (name, damaged file)
TRUNCATED = [
    ("PNG without IEND", GOOD_PNG[: _IEND[0]]),
    ("PNG cut inside IEND", GOOD_PNG[: _IEND[0] + 6]),
    ("PNG cut inside IDAT's CRC", GOOD_PNG[: _IDAT[1] - 2]),
    ("PNG cut inside IDAT's zlib checksum", GOOD_PNG[: _IDAT[1] - 6]),
    ("PNG cut in the middle of IDAT", GOOD_PNG[: (_IDAT[0] + _IDAT[1]) // 2]),
    ("PNG cut in its header", GOOD_PNG[:20]),
    ("JPEG without EOI", GOOD_JPEG[:-2]),
    ("JPEG without EOI, a comment after the scan", GOOD_JPEG[:-2] + b"\xff\xfe\x00\x06note"),
    ("JPEG cut inside its scan data", GOOD_JPEG[: len(GOOD_JPEG) * 3 // 4]),
    ("JPEG cut inside a marker segment", GOOD_JPEG[:30]),
]
# Pillow 13 decodes these without a word: the walks in mlapp.plugins.image are what refuse them.
PILLOW_ACCEPTS = {
    "PNG without IEND",
    "PNG cut inside IEND",
    "PNG cut inside IDAT's CRC",
    "PNG cut inside IDAT's zlib checksum",
    "JPEG without EOI, a comment after the scan",
}


@pytest.mark.parametrize(("name", "data"), TRUNCATED, ids=[name for name, _ in TRUNCATED])
def test_truncated_files_are_refused(name: str, data: bytes) -> None:
    assert "truncated" in refused(data), name


@pytest.mark.parametrize(("name", "data"), TRUNCATED, ids=[name for name, _ in TRUNCATED])
def test_what_pillow_alone_does_with_truncated_files(name: str, data: bytes) -> None:
    """Pins the Pillow behaviour the walks exist for: if this fails, Pillow changed and the comments in
    mlapp.plugins.image are stale."""
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        accepted = True
    except (OSError, SyntaxError):
        accepted = False
    assert accepted == (name in PILLOW_ACCEPTS), name


@pytest.mark.parametrize("chunk", [b"IHDR", b"IDAT", b"IEND"])
def test_a_png_chunk_with_a_bad_crc_is_refused(chunk: bytes) -> None:
    _, end = _png_parts(GOOD_PNG)[chunk]
    damaged = bytearray(GOOD_PNG)
    damaged[end - 1] ^= 0x01
    assert f"{chunk.decode()} chunk fails its CRC check" in refused(bytes(damaged))


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        # Both raise ValueError inside Pillow 13 (PngStream.chunk_tRNS; Image.convert of P with a long tRNS).
        ("grey tRNS of one byte", png_by_hand(4, 4, 0, extra=(png_chunk(b"tRNS", b"\x01"),)), "Truncated tRNS"),
        ("tRNS longer than the palette",
         png_by_hand(4, 4, 3, zlib.compress(b"\x00\x00\x01\x02\x03" * 4),
                     (png_chunk(b"PLTE", bytes(768)), png_chunk(b"tRNS", bytes(300)))),
         "palette index out of range"),
        ("bit depth 3", PNG_MAGIC + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 3, 0, 0, 0, 0))
         + png_chunk(b"IDAT", zlib.compress(bytes(20))) + png_chunk(b"IEND", b""), "cannot read its header"),
        ("zlib garbage", png_by_hand(4, 4, 0, b"\x78\x9c\xff\xff\xff"), "broken data stream"),
    ],
)  # fmt: skip
def test_decoder_errors_are_input_errors_with_pillows_reason(name: str, data: bytes, why: str) -> None:
    message = refused(data)
    assert message.startswith("the image is damaged"), name
    assert why in message, name


def test_a_jpeg_is_decoded_reduced(monkeypatch: pytest.MonkeyPatch) -> None:
    """libjpeg scales by 1/4 while decoding, and the answer is a full decode's within 3/255."""
    decoded: set[tuple[int, int]] = set()
    load = ImageFile.ImageFile.load

    def recording(self: ImageFile.ImageFile) -> object:
        result = load(self)
        decoded.add(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording)
    photo = saved(digit_picture(1200, 1000, "RGB"), "JPEG", quality=90)
    small = Preprocessing(height=8, width=8)
    x = image_bytes_to_input(photo, small)
    # At least OVERSAMPLE x 8 = 128 pixels a side: 1000 / 8 = 125 would be fewer, 1000 / 4 = 250 is not.
    assert decoded == {(300, 250)}
    monkeypatch.undo()
    assert float(np.abs(x - full_size_reference(photo, small)).max()) <= 3 / 255


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGB", "RGBA", "I;16"])
def test_a_png_answers_as_before_the_bounds(mode: str) -> None:
    """Greying in bands gives, to the bit, what greying the whole picture gave (600 x 500 RGBA is two bands)."""
    data = saved(digit_picture(600, 500, mode), "PNG", **({"transparency": 3} if mode == "P" else {}))
    for pre in (Preprocessing(height=8, width=8), DIGIT):
        assert np.array_equal(image_bytes_to_input(data, pre), full_size_reference(data, pre)), (mode, pre)


def _with_repeated_segment(data: bytes, marker: int, times: int) -> bytes:
    _, start, end = next(s for s in jpeg_segments(data) if s[0] == marker)
    return data[:end] + data[start:end] * times + data[end:]


def test_jpeg_scans_are_capped() -> None:
    progressive = saved(digit_picture(64, 48, "RGB"), "JPEG", progressive=True)
    scans = sum(1 for marker, _, _ in jpeg_segments(progressive) if marker == 0xDA)
    fits = _with_repeated_segment(progressive, 0xDA, pictures.MAX_JPEG_SCANS - scans)
    assert image_bytes_to_input(fits, DIGIT).shape == (1, 1, 28, 28)
    over = _with_repeated_segment(progressive, 0xDA, pictures.MAX_JPEG_SCANS - scans + 1)
    assert "more than 32 scans" in refused(over)


@pytest.mark.usefixtures("no_pillow_decoding")
def test_a_multi_scan_jpeg_whose_coefficients_are_over_the_cap_is_refused_from_its_header() -> None:
    # 4-component progressive at 4096 x 3072: 96 MiB of coefficients whatever the draft scale.
    cmyk = saved(Image.new("CMYK", (16, 16)), "JPEG", progressive=True)
    at = next(start for marker, start, _ in jpeg_segments(cmyk) if marker == 0xC2)
    big = cmyk[: at + 5] + struct.pack(">HH", 3072, 4096) + cmyk[at + 9 :]
    assert "needs 96 MiB to decode, over 64 MiB" in refused(big)


def test_a_baseline_jpeg_at_the_pixel_cap_is_read() -> None:
    """The coefficient cap is for multi-scan files only: a one-scan JPEG streams."""
    cmyk = saved(digit_picture(4096, 3072, "CMYK"), "JPEG", quality=80)
    assert image_bytes_to_input(cmyk, DIGIT).shape == (1, 1, 28, 28)


@pytest.mark.parametrize(
    ("name", "build", "message"),
    [
        ("marker segments", lambda j: j[:2] + b"\xff\xfe\x00\x02" * 1024 + j[2:], "more than 1024 marker segments"),
        ("fill bytes", lambda j: j[:2] + b"\xff" * 1100 + j[2:], "more than 1024 bytes outside its segments"),
        ("PNG chunks", lambda _: png_by_hand(4, 4, 0, GREY_4X4, (png_chunk(b"tEXt", b"a\x00b"),) * 10_000),
         "more than 10000 chunks"),
    ],
)  # fmt: skip
def test_what_pillow_walks_in_python_is_capped(name: str, build: Callable[[bytes], bytes], message: str) -> None:
    assert message in refused(build(GOOD_JPEG)), name


def test_png_text_and_profile_chunks_never_reach_pillow() -> None:
    """100 zTXt chunks of 1 MiB each: Pillow 13 alone holds up to 64 MiB of them (PngImagePlugin.MAX_TEXT_MEMORY)."""
    bomb = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b" " * (1 << 20), 9))
    raw = b"".join(b"\x00" + bytes(range(100, 132)) for _ in range(32))
    data = png_by_hand(32, 32, 0, zlib.compress(raw), (bomb,) * 100)
    assert len(data) < 200_000
    with pytest.raises(ValueError, match="Too much memory used in text chunks"), Image.open(io.BytesIO(data)) as img:
        img.load()
    assert image_bytes_to_input(data, DIGIT).shape == (1, 1, 28, 28)


# Measures one decode in a fresh interpreter: its peak resident memory (VmHWM) over
# its resident memory just before (VmRSS), from Linux's /proc. Not ru_maxrss: Linux
# carries it across exec from the forked pytest process (getrusage(2)).
_MEASURE = """
import re, sys
from PIL import Image, JpegImagePlugin, PngImagePlugin
from mlapp.plugins.image import Preprocessing, image_bytes_to_input

def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\\s+(\\d+) kB", f.read())[1]) * 1024

data = open(sys.argv[1], "rb").read()
before = status("VmRSS")
image_bytes_to_input(data, Preprocessing(height=28, width=28))
print(status("VmHWM") - before)
"""


def peak_bytes_of_one_decode(tmp_path: Path, data: bytes) -> int:
    if not Path("/proc/self/status").exists():
        pytest.skip("measures RSS through Linux's /proc")
    picture = tmp_path / "picture"
    picture.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(picture)], env=app_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout)
    print(f"peak {peak / 2**20:.1f} MiB")  # shown with -s
    return peak


WORST_ALLOWED: dict[str, Callable[[], bytes]] = {
    # The worst case of the derivation: draft scale 1 (a side under 2 x 16 x 28), 56 MiB of coefficients.
    "thin progressive CMYK JPEG at scale 1":
        lambda: saved(digit_picture(895, 8192, "CMYK"), "JPEG", progressive=True, quality=80),
    "progressive CMYK JPEG at the coefficient cap":
        lambda: saved(digit_picture(4096, 2048, "CMYK"), "JPEG", progressive=True, quality=80),
    "RGBA PNG at the pixel cap": lambda: saved(digit_picture(4096, 3072, "RGBA"), "PNG", compress_level=1),
}  # fmt: skip


@pytest.mark.parametrize("name", WORST_ALLOWED)
def test_the_worst_allowed_pictures_stay_under_the_stated_bound(tmp_path: Path, name: str) -> None:
    peak = peak_bytes_of_one_decode(tmp_path, WORST_ALLOWED[name]())
    assert peak < pictures.DECODE_PEAK_BYTES, f"{name}: {peak >> 20} MiB"


def test_a_baseline_jpeg_photo_is_decoded_in_little_memory(tmp_path: Path) -> None:
    """Drafted, a 12 MP baseline JPEG never exists at full size (48 MiB as RGB)."""
    photo = saved(digit_picture(4096, 3072, "RGB"), "JPEG", quality=90)
    peak = peak_bytes_of_one_decode(tmp_path, photo)
    assert peak < 16 << 20, f"{peak >> 20} MiB"
