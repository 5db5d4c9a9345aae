"""Dataset layouts, image loading policy and transforms.

* :mod:`hrrkit.data.io` — the one image loading policy (:func:`load_image`) and its typed errors.
* :mod:`hrrkit.data.layouts` — ForenSynths, GenImage, DiffusionForensics, flat and CSV readers.
* :mod:`hrrkit.data.dataset` — the torch ``ImageDataset``, input policies, augmentation,
  skip-and-report batching.
* :mod:`hrrkit.data.verify` — ``hrrkit data verify``: decode check, duplicates, leaks, manifest.
"""

from hrrkit.data import augment as _augment  # noqa: F401  registers the augment presets (cnnspot, jpeg-chain)
from hrrkit.data.io import (
    CorruptImageError,
    DecompressionBombError,
    EmptyFileError,
    ImageLoadError,
    ImageTooSmallError,
    MissingFileError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
    list_image_files,
    load_image,
    to_tensor,
)
from hrrkit.data.layouts import LayoutError, Sample, detect_layout, read_layout

__all__ = [
    "CorruptImageError",
    "DecompressionBombError",
    "EmptyFileError",
    "ImageLoadError",
    "ImageTooSmallError",
    "LayoutError",
    "MissingFileError",
    "NotAnImageError",
    "Sample",
    "TruncatedImageError",
    "UnsupportedImageError",
    "detect_layout",
    "list_image_files",
    "load_image",
    "read_layout",
    "to_tensor",
]
