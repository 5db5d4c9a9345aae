"""A corpus of good and hostile image files, generated on the fly (nothing binary is committed).

Used by the loader tests and by any test that must show "bad files are reported, good ones are
scored" (``detect``, ``eval``, data loading). Each case records what :func:`hrrkit.data.io.load_image`
must do with it under the default policy:

* good cases: the ``(width, height)`` the loaded RGB image has, and optionally the expected RGB
  value of its top-left pixel (checks the mode/alpha/EXIF rules);
* bad cases: the :class:`~hrrkit.data.io.ImageLoadError` subclass it must raise.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hrrkit.data import io as image_io

__all__ = ["CorpusCase", "good_cases", "bad_cases", "write_corpus", "encode"]


@dataclass(frozen=True)
class CorpusCase:
    """One file of the corpus. Exactly one of ``size`` (good) and ``error`` (bad) is set."""

    name: str  # the file name, extension included (the extension may lie on purpose)
    make: Callable[[], bytes]
    size: tuple[int, int] | None = None  # (width, height) after loading
    top_left: tuple[int, int, int] | None = None  # expected RGB of pixel (0, 0), if checked
    error: type[image_io.ImageLoadError] | None = None

    @property
    def is_good(self) -> bool:
        return self.error is None

    def data(self) -> bytes:
        return self.make()


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    """``img`` saved in ``fmt`` to bytes."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _solid(mode: str, size: tuple[int, int], colour) -> Image.Image:
    return Image.new(mode, size, colour)


def _png_with_header_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR then claims ``width x height`` (CRC fixed): a bomb header."""
    data = bytearray(encode(_noise(8, 8), "PNG"))
    ihdr = bytearray(data[12:29])  # chunk type (4) + IHDR payload (13)
    ihdr[4:8] = struct.pack(">I", width)
    ihdr[8:12] = struct.pack(">I", height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _corrupt_png() -> bytes:
    data = bytearray(encode(_noise(64, 64), "PNG"))
    start = data.index(b"IDAT") + 20
    for i in range(start, start + 40):  # scramble the deflate stream (CRC left stale)
        data[i] ^= 0xFF
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    img = Image.new("RGB", (40, 16), (200, 30, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": displayed size is 16 x 40
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [_solid("RGB", (12, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _animated_png() -> bytes:
    frames = [_solid("RGB", (9, 7), colour) for colour in ((0, 255, 0), (255, 0, 0))]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:])


def _palette_with_transparency() -> bytes:
    img = Image.new("P", (6, 5), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    return encode(img, "PNG", transparency=0)  # palette entry 0 fully transparent


def _gray16(value: int) -> bytes:
    return encode(Image.fromarray(np.full((5, 7), value, dtype=np.uint16)), "PNG")


def _float_tiff() -> bytes:
    return encode(Image.fromarray(np.full((4, 6), 0.5, dtype=np.float32), "F"), "TIFF")


def _truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def good_cases() -> list[CorpusCase]:
    """Files that must load, with the size and (some) pixel values the policy promises."""
    white = (255, 255, 255)
    return [
        CorpusCase("rgb.png", lambda: encode(_solid("RGB", (20, 12), (1, 2, 3)), "PNG"), (20, 12), (1, 2, 3)),
        CorpusCase("photo.jpg", lambda: encode(_noise(24, 32), "JPEG", quality=90), (32, 24)),
        CorpusCase("tiny_1x1.png", lambda: encode(_solid("RGB", (1, 1), (9, 8, 7)), "PNG"), (1, 1), (9, 8, 7)),
        CorpusCase("thin_1x300.png", lambda: encode(_noise(300, 1), "PNG"), (1, 300)),
        CorpusCase("thin_300x1.webp", lambda: encode(_noise(1, 300), "WEBP", lossless=True), (300, 1)),
        CorpusCase("gray.png", lambda: encode(_solid("L", (7, 5), 77), "PNG"), (7, 5), (77, 77, 77)),
        CorpusCase("bilevel.bmp", lambda: encode(_solid("1", (8, 3), 1), "BMP"), (8, 3), (255, 255, 255)),
        CorpusCase("gray16.png", lambda: _gray16(65535), (7, 5), (255, 255, 255)),
        CorpusCase("gray16_mid.png", lambda: _gray16(257 * 100), (7, 5), (100, 100, 100)),
        CorpusCase("float.tif", _float_tiff, (6, 4), (128, 128, 128)),
        CorpusCase(
            "palette.gif",
            lambda: encode(_solid("RGB", (5, 5), (255, 0, 0)).convert("P"), "GIF"),
            (5, 5),
            (255, 0, 0),
        ),
        CorpusCase("palette_transparent.png", _palette_with_transparency, (6, 5), white),
        CorpusCase("rgba_clear.png", lambda: encode(_solid("RGBA", (4, 4), (0, 0, 0, 0)), "PNG"), (4, 4), white),
        CorpusCase(
            "rgba_half.png",
            lambda: encode(_solid("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"),
            (4, 4),
            (127, 127, 127),
        ),
        CorpusCase("la.png", lambda: encode(_solid("LA", (3, 6), (0, 0)), "PNG"), (3, 6), white),
        CorpusCase("cmyk.jpg", lambda: encode(_solid("CMYK", (6, 6), (0, 255, 255, 0)), "JPEG", quality=100), (6, 6)),
        CorpusCase("cmyk.tif", lambda: encode(_solid("CMYK", (6, 6), (0, 255, 0, 0)), "TIFF"), (6, 6), (255, 0, 255)),
        CorpusCase("exif_rotated.jpg", _exif_rotated_jpeg, (16, 40)),
        CorpusCase("animated.gif", _animated_gif, (12, 10), (255, 0, 0)),
        CorpusCase("animated.png", _animated_png, (9, 7), (0, 255, 0)),
        CorpusCase("image.tiff", lambda: encode(_noise(9, 11), "TIFF"), (11, 9)),
        CorpusCase("wrong_extension.jpg", lambda: encode(_solid("RGB", (5, 4), (4, 5, 6)), "PNG"), (5, 4), (4, 5, 6)),
    ]


def bad_cases() -> list[CorpusCase]:
    """Files that must raise the named typed error."""
    err = image_io
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    return [
        CorpusCase("empty.png", lambda: b"", error=err.EmptyFileError),
        CorpusCase("text.jpg", lambda: b"this is a text file, not a JPEG\n" * 4, error=err.NotAnImageError),
        CorpusCase("page.png", lambda: b"<!doctype html><html><body>404</body></html>", error=err.NotAnImageError),
        CorpusCase("postscript.png", lambda: eps, error=err.NotAnImageError),  # refused: runs Ghostscript
        CorpusCase("zeros.webp", lambda: bytes(512), error=err.NotAnImageError),
        CorpusCase("truncated.jpg", lambda: _truncated(encode(_noise(64, 64), "JPEG")), error=err.TruncatedImageError),
        CorpusCase("truncated.png", lambda: _truncated(encode(_noise(64, 64), "PNG")), error=err.TruncatedImageError),
        CorpusCase("corrupt.png", _corrupt_png, error=err.CorruptImageError),
        CorpusCase("bomb.png", lambda: _png_with_header_size(100_000, 100_000), error=err.DecompressionBombError),
        CorpusCase("truncated.gif", lambda: _truncated(encode(_noise(32, 32), "GIF")), error=err.TruncatedImageError),
    ]


def write_corpus(folder: str | Path, cases: list[CorpusCase] | None = None) -> dict[Path, CorpusCase]:
    """Write ``cases`` (default: every good and bad case) into ``folder``; returns path -> case."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in good_cases() + bad_cases() if cases is None else cases:
        path = target / case.name
        path.write_bytes(case.data())
        written[path] = case
    return written
