"""The image loading policy: the one place where hrrkit turns a file into pixels.

Every reader in hrrkit (datasets, ``detect``, ``eval``, retrospection, ``data verify``) loads images
through :func:`load_image`, so a file either becomes an RGB (or L) 8-bit ``PIL.Image`` under the
rules below, or raises a subclass of :class:`ImageLoadError` that names the file and the problem.
No other exception type escapes :func:`load_image` for bad *content* (only programming errors such
as a bad argument raise ``ValueError``/``TypeError``).

The rules (also in ``docs/data.md``):

* **Formats**: only raster formats in :data:`SUPPORTED_FORMATS` are decoded. Formats that run
  external programs or parse complex containers (EPS via Ghostscript, WMF, PSD, HDF5, ...) are
  refused as :class:`NotAnImageError`, whatever the file extension says.
* **Empty** files raise :class:`EmptyFileError`; missing or unreadable paths raise
  :class:`MissingFileError`.
* **Pixel limit**: ``width * height`` above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 100
  megapixels, or the ``HRRKIT_MAX_PIXELS`` environment variable; ``None`` disables the limit) raises
  :class:`DecompressionBombError` *before* any pixel is decoded. Raising the limit also lifts
  Pillow's own (lower) bomb limit for that call.
* **Truncated** files raise :class:`TruncatedImageError`; other decoder failures raise
  :class:`CorruptImageError`. Truncated files are never silently padded with grey.
* **Animated** files (GIF, APNG, WebP, multi-page TIFF): the first frame is used.
* **EXIF orientation** is applied (``apply_exif=True``), so the pixels are what a viewer shows.
  A broken EXIF block leaves the orientation as stored rather than failing the image.
* **Bit depth**: 16-bit images (``I;16*``, ``I``) are scaled to 8 bits by ``v / 257`` (65535 -> 255),
  with ``I`` values clipped to [0, 65535]; 32-bit float (``F``) images are taken to lie in [0, 1]
  and scaled by 255, clipped. 1-bit images become 0/255.
* **Colour**: grayscale, palette, CMYK (naive conversion; embedded ICC profiles are not applied),
  YCbCr, LAB and HSV become RGB with Pillow's conversions. Grayscale is replicated to 3 channels.
* **Transparency** (RGBA, LA, PA, palette or RGB with a transparency key): alpha-composited over
  ``background`` (default white, ``(255, 255, 255)``), the way an image viewer on a white page shows
  it. ``background=None`` drops alpha and keeps the stored colours instead.
* **Tiny and thin** images (1x1, 1xN) load as they are; ``min_side`` (default 1) raises
  :class:`ImageTooSmallError` for images whose shorter side is below it. Input policies downstream
  (``hrrkit.data.dataset``) decide how to crop or pad them.
* **Huge** images within the pixel limit load at full resolution; the tiles input policy crops
  them downstream. ``max_side`` optionally downscales (antialiased, JPEG draft decoding where
  possible) so the longer side is at most ``max_side``; this destroys high-frequency generation
  traces, so detectors should prefer tiles.
"""

from __future__ import annotations

import glob as _glob
import io
import os
import stat as _stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_FORMATS",
    "ImageSource",
    "ImageLoadError",
    "MissingFileError",
    "EmptyFileError",
    "NotAnImageError",
    "CorruptImageError",
    "TruncatedImageError",
    "DecompressionBombError",
    "UnsupportedImageError",
    "ImageTooSmallError",
    "ImageInfo",
    "default_max_pixels",
    "load_image",
    "inspect_image",
    "to_tensor",
    "list_image_files",
    "is_image_file",
]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]  # noqa: UP007 - runtime alias on 3.10

# 100 megapixels: a 12000x8000 photograph fits, a 1 GB-per-channel bomb does not. Decoding at the
# limit needs about 300 MB for the RGB bytes plus the float tensor made from them downstream.
DEFAULT_MAX_PIXELS = 100_000_000

# Raster formats Pillow decodes in-process without external programs. Kept as Pillow's format ids.
SUPPORTED_FORMATS: tuple[str, ...] = (
    "JPEG",
    "MPO",
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "DIB",
    "TIFF",
    "PPM",
    "TGA",
    "JPEG2000",
    "AVIF",
    "HEIF",
    "QOI",
    "ICO",
)

# Extensions that list_image_files picks up (lower case, with the dot).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".jpx",
        ".avif", ".heic", ".heif", ".qoi", ".ico", ".mpo",
    }
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ImageLoadError(Exception):
    """An image could not be loaded under hrrkit's loading policy.

    Attributes:
        path: the file (or the ``name`` given for in-memory bytes) as a string.
        reason: what was wrong, in words a person can act on.
        kind: a short stable identifier of the error class (``"empty"``, ``"truncated"``, ...), used
            in machine-readable skip lists.
    """

    kind = "unreadable"

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = str(path) if path is not None else "<bytes>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps (path, reason) across DataLoader worker processes
        return (type(self), (self.path, self.reason))

    def to_dict(self) -> dict[str, str]:
        """``{"path", "error", "reason"}`` for JSON skip lists."""
        return {"path": self.path, "error": self.kind, "reason": self.reason}


class MissingFileError(ImageLoadError):
    """The path does not exist, is not a regular file, or cannot be opened (permissions)."""

    kind = "missing"


class EmptyFileError(ImageLoadError):
    """The file has zero bytes."""

    kind = "empty"


class NotAnImageError(ImageLoadError):
    """The bytes are not an image in any of :data:`SUPPORTED_FORMATS` (whatever the extension says)."""

    kind = "not_an_image"


class CorruptImageError(ImageLoadError):
    """The header was recognised but the pixel data could not be decoded."""

    kind = "corrupt"


class TruncatedImageError(CorruptImageError):
    """The file ends before all pixel data was read (an interrupted download or copy)."""

    kind = "truncated"


class DecompressionBombError(ImageLoadError):
    """The declared size exceeds the pixel limit; raise ``max_pixels`` to accept it."""

    kind = "too_many_pixels"


class UnsupportedImageError(ImageLoadError):
    """A recognised image whose mode or geometry hrrkit cannot turn into RGB pixels."""

    kind = "unsupported"


class ImageTooSmallError(ImageLoadError):
    """The shorter side is below the ``min_side`` that the caller asked for."""

    kind = "too_small"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says, read without decoding its pixels.

    ``width``/``height`` are as stored (before EXIF rotation); ``n_frames`` is 1 for still images.
    """

    format: str
    mode: str
    width: int
    height: int
    n_frames: int
    exif_orientation: int | None


def default_max_pixels() -> int | None:
    """The pixel limit used when ``max_pixels`` is not given: ``HRRKIT_MAX_PIXELS`` or 100 MP.

    ``HRRKIT_MAX_PIXELS=0`` (or ``none``) disables the limit.
    """
    raw = os.environ.get("HRRKIT_MAX_PIXELS")
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PIXELS
    if raw.strip().lower() in {"0", "none", "off"}:
        return None
    try:
        value = int(float(raw))
    except ValueError:
        raise ValueError(f"HRRKIT_MAX_PIXELS={raw!r} is not a number of pixels (or 'none')") from None
    if value < 0:
        raise ValueError(f"HRRKIT_MAX_PIXELS={raw!r} must be positive (or 0/'none' for no limit)")
    return value


_UNSET = object()
# Pillow's own bomb check reads a module-global; the rare call that must lift it holds this lock so
# concurrent threads in hrrkit never see a half-changed value.
_PIL_LIMIT_LOCK = threading.Lock()


def _formats() -> list[str]:
    Image.init()
    return [name for name in SUPPORTED_FORMATS if name in Image.OPEN]


def _source_name(source: ImageSource, name: str | os.PathLike | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source) if isinstance(os.fspath(source), str) else repr(source)
    file_name = getattr(source, "name", None)
    return str(file_name) if isinstance(file_name, (str, os.PathLike)) else "<bytes>"


def _open_stream(source: ImageSource, where: str) -> IO[bytes]:
    """A readable binary stream for ``source``; raises Missing/EmptyFileError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyFileError(where, "the data is empty (0 bytes)")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise MissingFileError(where, "no such file") from None
        except IsADirectoryError:
            raise MissingFileError(where, "is a directory, not an image file") from None
        except PermissionError:
            raise MissingFileError(where, "permission denied") from None
        except OSError as exc:
            raise MissingFileError(where, f"cannot open: {exc.strerror or exc}") from None
        try:
            info = os.fstat(stream.fileno())
        except OSError as exc:  # pragma: no cover - fstat on an open file does not fail in practice
            stream.close()
            raise MissingFileError(where, f"cannot stat: {exc}") from None
        if not _stat.S_ISREG(info.st_mode):
            stream.close()
            raise MissingFileError(where, "is not a regular file")
        if info.st_size == 0:
            stream.close()
            raise EmptyFileError(where, "the file is empty (0 bytes)")
        return stream
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{where}: file object must be opened in binary mode, read() gave {type(data)}")
        if len(data) == 0:
            raise EmptyFileError(where, "the data is empty (0 bytes)")
        return io.BytesIO(bytes(data))
    raise TypeError(f"load_image expects a path, bytes or a binary file object, got {type(source).__name__}")


def _open_pil(stream: IO[bytes], where: str) -> Image.Image:
    """``Image.open`` restricted to the supported formats, with hrrkit's pixel limit authoritative."""
    formats = _formats()

    def _open() -> Image.Image:
        # No warnings.catch_warnings() here: it is not thread-safe before Python 3.14, and verify
        # decodes in threads. Pillow may warn (once per location) for 89-179 MP images.
        stream.seek(0)
        return Image.open(stream, formats=formats)

    try:
        try:
            img = _open()
        except Image.DecompressionBombError:
            # Pillow has its own (global) limit; hrrkit's is the one that counts, so lift Pillow's
            # for this one open and let _check_size apply ours with a clear message.
            with _PIL_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    img = _open()
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as exc:  # pragma: no cover - the limit is lifted above
        raise DecompressionBombError(where, str(exc)) from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            where, f"not an image in a supported format ({', '.join(formats)}); the extension does not matter"
        ) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        raise CorruptImageError(where, "header asks for more memory than is available") from None
    except Exception as exc:  # any parser failure on hostile bytes becomes a typed error
        raise _decode_error(where, exc, stage="reading the header") from None
    return img


def _decode_error(where: str, exc: BaseException, *, stage: str) -> ImageLoadError:
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return TruncatedImageError(where, f"the file is truncated ({text})")
    if isinstance(exc, EOFError) or "premature end" in text.lower() or "unexpected end" in text.lower():
        return TruncatedImageError(where, f"the data ends early while {stage} ({type(exc).__name__}: {text})")
    return CorruptImageError(where, f"cannot decode while {stage} ({type(exc).__name__}: {text})")


def _check_size(img: Image.Image, where: str, max_pixels: int | None) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise UnsupportedImageError(where, f"declares a {width}x{height} image (a side is zero)")
    if max_pixels is not None and width * height > max_pixels:
        raise DecompressionBombError(
            where,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels "
            "(possible decompression bomb; pass a larger max_pixels or set HRRKIT_MAX_PIXELS to accept it)",
        )


def _to_8bit(img: Image.Image, where: str) -> Image.Image:
    """Turn high-bit-depth and float single-channel modes into ``L``; other modes pass through."""
    mode = img.mode
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img, dtype=np.float64)
        values = np.clip(values, 0.0, 65535.0) / 257.0
        return Image.fromarray(np.rint(values).astype(np.uint8), mode="L")
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        values = np.clip(values, 0.0, 1.0) * 255.0
        return Image.fromarray(np.rint(values).astype(np.uint8), mode="L")
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in img.info


def _to_mode(img: Image.Image, where: str, mode: str, background: tuple[int, int, int] | None) -> Image.Image:
    img = _to_8bit(img, where)
    if _has_alpha(img):
        if img.mode in {"RGBa", "La"}:  # premultiplied alpha: un-premultiply first
            img = img.convert("RGBA" if img.mode == "RGBa" else "LA")
        rgba = img.convert("RGBA")
        if background is None:
            img = rgba.convert("RGB")
        else:
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            img = Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        if mode == "RGB":
            return img if img.mode == "RGB" else img.convert("RGB")
        return img if img.mode == "L" else img.convert("L")
    except (ValueError, OSError) as exc:
        raise UnsupportedImageError(where, f"cannot convert mode {img.mode!r} to {mode} ({exc})") from None


def _validate_background(background) -> tuple[int, int, int] | None:
    if background is None:
        return None
    if isinstance(background, int):
        background = (background,) * 3
    bg = tuple(int(v) for v in background)
    if len(bg) != 3 or any(not 0 <= v <= 255 for v in bg):
        raise ValueError(f"background must be None or three ints in [0, 255], got {background!r}")
    return bg  # type: ignore[return-value]


def load_image(
    source: ImageSource,
    *,
    mode: str = "RGB",
    max_pixels: int | None | object = _UNSET,
    max_side: int | None = None,
    min_side: int = 1,
    background: tuple[int, int, int] | int | None = (255, 255, 255),
    apply_exif: bool = True,
    name: str | os.PathLike | None = None,
) -> Image.Image:
    """Decode one image under hrrkit's loading policy (see the module docstring).

    Args:
        source: a path, raw bytes, or a binary file object.
        mode: ``"RGB"`` (default) or ``"L"``; the returned image always has 8 bits per channel.
        max_pixels: the largest ``width * height`` accepted; defaults to :func:`default_max_pixels`
            (100 MP or ``HRRKIT_MAX_PIXELS``); ``None`` for no limit.
        max_side: if given, downscale (antialiased) so the longer side is at most this many pixels.
        min_side: raise :class:`ImageTooSmallError` if the shorter side is smaller (default 1).
        background: the RGB colour transparent pixels are composited over; ``None`` drops alpha.
        apply_exif: rotate/flip according to the EXIF orientation tag.
        name: the name used in error messages (defaults to the path, or ``"<bytes>"``).

    Returns:
        A fully decoded ``PIL.Image`` in ``mode``, detached from the file (the file is closed).

    Raises:
        ImageLoadError: one of its subclasses, naming the file and the problem.
        ValueError: bad arguments (not bad files).
    """
    if mode not in {"RGB", "L"}:
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if max_pixels is _UNSET:
        max_pixels = default_max_pixels()
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels <= 0):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError(f"max_side must be a positive int or None, got {max_side!r}")
    if not isinstance(min_side, int) or min_side < 1:
        raise ValueError(f"min_side must be an int >= 1, got {min_side!r}")
    bg = _validate_background(background)
    where = _source_name(source, name)

    stream = _open_stream(source, where)
    try:
        img = opened = _open_pil(stream, where)
        out = None
        try:
            _check_size(img, where, max_pixels)  # type: ignore[arg-type]
            try:
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                if max_side is not None and max(img.size) > max_side and img.format == "JPEG":
                    # Decode at a reduced DCT scale (>= the target size), then resize exactly below.
                    scale = max_side / max(img.size)
                    img.draft(img.mode, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
                img.load()
            except (KeyboardInterrupt, SystemExit):
                raise
            except MemoryError:
                raise CorruptImageError(where, "decoding needs more memory than is available") from None
            except Image.DecompressionBombError as exc:  # a frame larger than the header said
                raise DecompressionBombError(where, str(exc)) from None
            except ImageLoadError:
                raise
            except Exception as exc:
                raise _decode_error(where, exc, stage="decoding the pixels") from None
            if apply_exif:
                img = _apply_exif(img)
            out = _to_mode(img, where, mode, bg)
            if out is opened and getattr(opened, "n_frames", 1) > 1:
                out = opened.copy()  # detach the first frame from the (about to close) stream
        finally:
            if out is not opened:
                opened.close()
    finally:
        stream.close()

    if max_side is not None and max(out.size) > max_side:
        scale = max_side / max(out.size)
        size = (max(1, round(out.width * scale)), max(1, round(out.height * scale)))
        out = out.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if min(out.size) < min_side:
        raise ImageTooSmallError(where, f"{out.width}x{out.height} has a side below min_side={min_side}")
    return out


def _apply_exif(img: Image.Image) -> Image.Image:
    try:
        transposed = ImageOps.exif_transpose(img)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        # A malformed EXIF block must not cost the image: keep the stored orientation.
        return img
    return img if transposed is None else transposed


def inspect_image(
    source: ImageSource, *, max_pixels: int | None | object = _UNSET, name: str | os.PathLike | None = None
) -> ImageInfo:
    """Read the header only: format, mode, stored size, frame count, EXIF orientation.

    Raises the same typed errors as :func:`load_image` for missing, empty, unrecognised and
    over-limit files; it does not detect truncated pixel data (use :func:`load_image` for that).
    """
    if max_pixels is _UNSET:
        max_pixels = default_max_pixels()
    where = _source_name(source, name)
    stream = _open_stream(source, where)
    try:
        img = _open_pil(stream, where)
        try:
            _check_size(img, where, max_pixels)  # type: ignore[arg-type]
            try:
                orientation = img.getexif().get(0x0112)
            except Exception:
                orientation = None
            return ImageInfo(
                format=str(img.format),
                mode=img.mode,
                width=img.width,
                height=img.height,
                n_frames=int(getattr(img, "n_frames", 1)),
                exif_orientation=int(orientation) if isinstance(orientation, int) else None,
            )
        finally:
            img.close()
    finally:
        stream.close()


def to_tensor(img: Image.Image, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(C, H, W)`` tensor in [-1, 1] from an 8-bit ``RGB`` (C=3) or ``L`` (C=1) image.

    The value map is ``v / 127.5 - 1`` (0 -> -1, 255 -> 1), the range diffusion models expect.
    """
    if img.mode not in {"RGB", "L"}:
        raise ValueError(f"to_tensor expects an RGB or L image (use load_image), got mode {img.mode!r}")
    array = np.array(img, dtype=np.uint8)  # a writable copy: torch shares its memory
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.to(dtype).div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the name has an image extension and is not hidden (``.DS_Store``, ``._x.jpg``)."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


_GLOB_CHARS = set("*?[")


def list_image_files(
    root_or_glob: str | os.PathLike | Iterable[str | os.PathLike],
    recursive: bool = True,
    *,
    extensions: Iterable[str] | None = None,
) -> list[Path]:
    """Image files under a folder, matching a glob, or a single file; sorted, without duplicates.

    Args:
        root_or_glob: a folder (walked, ``recursive`` by default; hidden files and folders skipped;
            symbolic links to folders are not followed), a glob pattern (``**`` works when
            ``recursive``), a single file path (returned even if its extension is unusual), or an
            iterable of these.
        extensions: lower-case extensions with the dot to accept; default :data:`IMAGE_EXTENSIONS`.

    Raises:
        FileNotFoundError: a folder or file that does not exist, or a glob that matches nothing.
    """
    exts = IMAGE_EXTENSIONS if extensions is None else frozenset(e.lower() for e in extensions)

    def accept(p: Path) -> bool:
        return not p.name.startswith(".") and p.suffix.lower() in exts

    if not isinstance(root_or_glob, (str, os.PathLike)):
        found: set[Path] = set()
        for item in root_or_glob:
            found.update(list_image_files(item, recursive, extensions=exts))
        return sorted(found, key=lambda p: p.as_posix())

    text = os.fspath(root_or_glob)
    path = Path(text)
    results: list[Path] = []
    if path.is_dir():
        if recursive:
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                results.extend(Path(dirpath) / f for f in filenames if accept(Path(f)))
        else:
            results = [p for p in path.iterdir() if p.is_file() and accept(p)]
    elif path.is_file():
        results = [path]
    elif _GLOB_CHARS & set(text):
        matches = [Path(m) for m in _glob.glob(text, recursive=recursive)]
        for m in matches:
            if m.is_dir():
                results.extend(list_image_files(m, recursive, extensions=exts))
            elif m.is_file() and accept(m):
                results.append(m)
        if not matches:
            raise FileNotFoundError(f"the pattern {text!r} matches no files")
    else:
        raise FileNotFoundError(f"{text}: no such file or folder")
    return sorted(set(results), key=lambda p: p.as_posix())
