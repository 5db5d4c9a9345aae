"""Small photo folders and tiny autoencoders on disk, for the aligned-data and zero-shot tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["save_tiny_autoencoders", "write_photos"]

# odd sizes on purpose: none is a multiple of 8, one is 8 px short of a multiple of 8 plus 1
PHOTO_SIZES: tuple[tuple[int, int], ...] = ((37, 45), (50, 64), (33, 41), (48, 57), (41, 33), (56, 49))


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth shading, a few soft blobs and sensor-like noise: content an autoencoder does not keep."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 5 + yy / 7)], axis=-1) * 180 + 30
    for _ in range(3):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 12)
        image += rng.uniform(-60, 60, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))[..., None]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photos(folder: str | Path, count: int = 4, *, seed: int = 0, quality: int = 75,
                 png: int = 1, subfolder: str | None = "trip") -> list[Path]:
    """``count`` JPEG photos (quality ``quality``, 4:2:0) of odd sizes plus ``png`` PNG ones under
    ``folder`` (the last JPEG in ``subfolder`` when given); returns their paths."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count + png):
        h, w = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        place = folder / subfolder if subfolder and i == count - 1 else folder
        place.mkdir(parents=True, exist_ok=True)
        path = place / (f"photo{i}.png" if i >= count else f"photo{i}.jpg")
        options = {} if i >= count else {"quality": quality, "subsampling": 2}
        Image.fromarray(_photo(rng, h, w)).save(path, **options)
        paths.append(path)
    return paths


def save_tiny_autoencoders(folder: str | Path) -> dict[str, Path]:
    """Two tiny random ``AutoencoderKL`` folders written with ``save_pretrained``: ``ae4`` (4 latent
    channels, a bare model folder) and ``ae16`` (16 channels, inside a pipeline folder's ``vae/``)."""
    from hrrkit.retrospect.tiny import tiny_vae

    folder = Path(folder)
    tiny_vae(seed=1).save_pretrained(folder / "ae4")
    tiny_vae(seed=2, latent_channels=16).save_pretrained(folder / "ae16" / "vae")
    return {"ae4": folder / "ae4", "ae16": folder / "ae16"}
