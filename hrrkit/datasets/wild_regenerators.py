"""Content-matched regenerators: the training fakes of the wild benchmark, made from real crops.

A *regenerator* takes a batch of real photo crops and returns generated images with the same
content (B-Free, DRCT): the fakes of ``train``/``val`` differ from their paired real crops only by
having been through a generator, so neither content, framing nor compression can tell the classes
apart. A regenerator sees the clean crop (never a JPEG/WebP-compressed copy); the common final chain
of :mod:`hrrkit.datasets.wild` is applied afterwards to reals and fakes alike.

Built in (all CPU-friendly, see ``docs/wild_benchmark_v1.md`` for the measured cost):

====================================  =========================================================
name                                   what it does to a ``S x S`` crop
====================================  =========================================================
``realesrgan-x4plus``                  Lanczos-downscale to ``S/4``, Real-ESRGAN x4plus (RRDBNet, 23 blocks)
``realesrgan-x4plus-anime``            the same with the 6-block anime model
``realesr-animevideov3-x2|x3|x4``      downscale by 2/3/4, SRVGGNetCompact back up
====================================  =========================================================

Adding one (e.g. an SDEdit / img2img or autoencoder regenerator built on the diffusion model that
``hrrkit.retrospect`` trains on real photographs) is one call::

    from hrrkit.datasets.wild_regenerators import register_regenerator

    def sdedit_03(crops, rng):                      # uint8 (N, S, S, 3), numpy Generator
        return my_img2img(crops, strength=0.3, seed=int(rng.integers(2**31)))   # uint8 (N, S, S, 3)

    register_regenerator("retrospector-sdedit-0.3", sdedit_03, version="ckpt-<sha256[:12]>",
                         description="hrrkit.retrospect diffusion model, SDEdit at strength 0.3")

and then naming it in ``WildConfig.train_per_generator`` / ``val_per_generator``. ``version`` is part
of the build's cache key: change it whenever the regenerator's output would change (new weights).
A regenerator must only ever be given crops of ``train``-role photographs (the builder guarantees it),
and a model behind it must have been trained on ``train``-role photographs only
(:func:`hrrkit.retrospect.photos.source_photographs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "REGENERATORS",
    "SHIPPED_REGENERATORS",
    "SHIPPED_VARIANTS",
    "register_shipped_regenerators",
    "retrospector_regenerator",
    "Regenerator",
    "RegenerateFn",
    "register_regenerator",
    "regenerate",
]

#: ``fn(crops, rng) -> images``: ``crops`` is ``uint8 (N, S, S, 3)``, the result must be too.
RegenerateFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Regenerator:
    """A named regenerator.

    Attributes:
        name: the ``generator`` name of its fakes in the manifest.
        fn: the function (see :data:`RegenerateFn`); must be deterministic given ``rng``.
        description: one line for the docs and ``build.json``.
        version: part of the cache key; change it when the outputs change.
        batch_size: crops per call.
        family: groups regenerators for per-family metrics (e.g. ``"real-esrgan"``).
    """

    name: str
    fn: RegenerateFn
    description: str
    version: str = "1"
    batch_size: int = 8
    family: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "version": self.version, "family": self.family}


#: Every registered regenerator, by name.
REGENERATORS: dict[str, Regenerator] = {}


def register_regenerator(
    name: str,
    fn: RegenerateFn,
    *,
    description: str,
    version: str = "1",
    batch_size: int = 8,
    family: str = "",
    replace: bool = False,
) -> Regenerator:
    """Register ``fn`` under ``name`` (an error if taken, unless ``replace``); returns the entry."""
    if not name or "/" in name or name != name.strip():
        raise ValueError(f"a regenerator name must be a non-empty folder name, got {name!r}")
    if name in REGENERATORS and not replace:
        raise ValueError(f"regenerator {name!r} is already registered; pass replace=True to override it")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    entry = Regenerator(name, fn, description, version, batch_size, family)
    REGENERATORS[name] = entry
    return entry


def regenerate(name: str, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Run regenerator ``name`` on ``crops`` (``uint8 (N, S, S, 3)``) and check the result's shape and dtype."""
    if name not in REGENERATORS:
        raise KeyError(f"unknown regenerator {name!r}; registered: {sorted(REGENERATORS)}")
    out = np.asarray(REGENERATORS[name].fn(crops, rng))
    if out.shape != crops.shape or out.dtype != np.uint8:
        raise ValueError(
            f"regenerator {name!r} returned {out.dtype} {out.shape}; it must return uint8 of the input's shape {crops.shape}"
        )
    return out


def _realesrgan_fn(model_name: str) -> RegenerateFn:
    def run(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        from hrrkit.datasets.realesrgan import MODELS, load_realesrgan, upscale

        del rng  # deterministic
        scale = MODELS[model_name].scale
        size = crops.shape[1]
        small = -(-size // scale)  # ceil: the model's output is then at least `size`, cut to it
        downscaled = np.stack(
            [np.asarray(Image.fromarray(c).resize((small, small), Image.Resampling.LANCZOS)) for c in crops]
        )
        big = upscale(load_realesrgan(model_name), downscaled)
        offset = (big.shape[1] - size) // 2
        return np.ascontiguousarray(big[:, offset : offset + size, offset : offset + size])

    return run


for _name, _blocks in (
    ("realesrgan-x4plus", "RRDBNet, 23 blocks"),
    ("realesrgan-x4plus-anime", "RRDBNet, 6 blocks, anime weights"),
    ("realesr-animevideov3-x2", "SRVGGNetCompact, x2"),
    ("realesr-animevideov3-x3", "SRVGGNetCompact, x3"),
    ("realesr-animevideov3-x4", "SRVGGNetCompact, x4"),
):
    register_regenerator(
        _name,
        _realesrgan_fn(_name),
        description=f"Lanczos downscale, then Real-ESRGAN {_name} ({_blocks}) back to the crop size",
        family="real-esrgan",
    )


# --------------------------------------------------------------------------------------------------
# diffusion regenerators: a retrospector (reconstruction of a real photograph by a diffusion model
# of real photographs) is a content-matched regenerator as it stands
# --------------------------------------------------------------------------------------------------

#: The shipped real-photograph diffusion model's file (hrrkit.retrospect.shipped), found by path so
#: that importing hrrkit.datasets never imports diffusers.
SHIPPED_RETROSPECTOR_WEIGHTS = Path(__file__).resolve().parents[1] / "retrospect" / "weights" / "real-photo-unet.safetensors"

#: The variants registered when those weights are present: name → ``shipped_retrospector`` options.
#: A one-step reconstruction from t = 100 (SDEdit at strength 0.1, one network evaluation) and a
#: 10-step DDIM inversion + resampling at strength 0.3 (DIRE's round trip, 6 evaluations). One step
#: from t = 300 was tried and left out: with the small model it is a blurred, speckled copy (mean
#: absolute difference 16 grey levels on 256-px crops of ``astronaut``), a trivially visible fake.
SHIPPED_VARIANTS: dict[str, dict[str, object]] = {
    "real-photo-unet-onestep-t100": {"mode": "one_step", "timestep": 100},
    "real-photo-unet-ddim-0.3": {"mode": "invert", "steps": 10, "strength": 0.3},
}


def retrospector_regenerator(make: Callable[[], Callable[..., object]]) -> RegenerateFn:
    """A regenerator from a retrospector factory (built once, on first use).

    ``make()`` returns a callable taking ``float32 (N, 3, S, S)`` in ``[-1, 1]`` and returning the
    reconstruction of the same shape (any :class:`hrrkit.retrospect.Retrospector`); crops are
    converted from and back to ``uint8 (N, S, S, 3)`` (rounded, clamped).
    """
    cached: list[Callable[..., object]] = []

    def run(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch

        del rng  # the retrospector's own seed makes it deterministic
        if not cached:
            cached.append(make())
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            y = cached[0](x)
        return ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    return run


def register_shipped_regenerators() -> list[str]:
    """Register :data:`SHIPPED_VARIANTS` if the shipped real-photograph diffusion model is present.

    Returns the names registered ([] without the weights). Their ``version`` is the weights' SHA-256
    prefix, so new weights give a new cache key. Called on import of this module.
    """
    if not (SHIPPED_RETROSPECTOR_WEIGHTS.is_file() and SHIPPED_RETROSPECTOR_WEIGHTS.with_name("real-photo-unet.json").is_file()
            and (SHIPPED_RETROSPECTOR_WEIGHTS.parents[1] / "shipped.py").is_file()):
        return []
    import hashlib

    version = "weights-" + hashlib.sha256(SHIPPED_RETROSPECTOR_WEIGHTS.read_bytes()).hexdigest()[:12]
    names = []
    for name, options in SHIPPED_VARIANTS.items():

        def make(options: dict[str, object] = options):
            from hrrkit.retrospect.shipped import shipped_retrospector

            return shipped_retrospector(**options)

        register_regenerator(name, retrospector_regenerator(make), version=version, family="real-photo-diffusion",
                             description=f"hrrkit's real-photograph diffusion model, {options}", replace=True)
        names.append(name)
    return names


#: Names of the diffusion regenerators registered at import (empty until the weights are shipped).
SHIPPED_REGENERATORS: tuple[str, ...] = tuple(register_shipped_regenerators())
