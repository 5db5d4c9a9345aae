"""The diffusion retrospector hrrkit ships: a small pixel ``UNet2DModel`` trained only on real photographs.

No diffusion weights can be downloaded at run time, so hrrkit trains its own, the way it trains the
mini-benchmark's generators (:mod:`hrrkit.datasets.recipe`): ``python scripts/train_retrospector.py``
runs :func:`hrrkit.retrospect.training.train_retrospector` on 64-px crops of the photographs that
:mod:`hrrkit.retrospect.photos` gives the role ``train`` (never a ``test`` photograph), and writes

* ``hrrkit/retrospect/weights/<name>.safetensors`` (EMA weights, float32), and
* ``hrrkit/retrospect/weights/<name>.json``: the training record (model config, schedule, settings,
  seed, photographs with their SHA-256, loss curve, time, versions, the weights' SHA-256, and the
  losses, block weight norms and fixed-image reconstruction of a seeded reference short run that the
  tests reproduce within a tolerance on any CPU).

The model follows DIRE's premise: a diffusion model of *real* images reconstructs generated images
differently from real ones. It is fully convolutional (no attention), so it runs on any size at a
cost linear in the pixel count. By default it runs DIRE's algorithm, DDIM inversion + DDIM sampling
(:class:`~hrrkit.retrospect.pixel_ddim.PixelDDIMRetrospector`), over a short range: one step up to
t = 24 and one step back, NFE 2 (chosen by measurement against longer round trips and one-step
denoising: docs/retrospection.md, "The shipped model").

    from hrrkit.retrospect.shipped import shipped_retrospector
    retro = shipped_retrospector()                 # "real-photo-unet", DDIM to t = 24 and back, NFE 2
    retro(images)                                  # (B, 3, H, W) in [-1, 1] → reconstruction

In a detector config: ``retrospector: {kind: pixel_ddim, path: "hrrkit:real-photo-unet"}``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SHIPPED_PREFIX",
    "SHIPPED_RETROSPECTORS",
    "WEIGHTS_DIR",
    "ShippedSpec",
    "ShippedWeightsError",
    "build_unet",
    "is_shipped_path",
    "load_shipped_unet",
    "shipped_record",
    "shipped_retrospector",
    "weights_sha256",
]

#: Where the shipped weights live (``<name>.safetensors`` + ``<name>.json``, the training record).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: A retrospector ``path`` starting with this names shipped weights instead of a folder.
SHIPPED_PREFIX = "hrrkit:"


class ShippedWeightsError(FileNotFoundError):
    """Shipped weights are missing, or their bytes differ from their training record."""


@dataclass(frozen=True)
class ShippedSpec:
    """Everything that defines one shipped retrospection model.

    Attributes:
        name: the name in configs (``path: "hrrkit:<name>"``).
        unet: keyword arguments of ``diffusers.UNet2DModel``.
        schedule: the DDPM training schedule (diffusers scheduler kwargs); also the DDIM schedule
            the retrospector walks.
        retrospection: the default :class:`PixelDDIMRetrospector` settings for these weights.
    """

    name: str
    unet: dict[str, Any]
    schedule: dict[str, Any]
    retrospection: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


REAL_PHOTO_UNET = ShippedSpec(
    name="real-photo-unet",
    unet={
        "sample_size": 64,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [8, 16, 32],
        "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        # no self-attention anywhere: cost linear in pixels, any image size, no train/test size gap
        "add_attention": False,
    },
    schedule={
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": "epsilon",
        "clip_sample": True,
        # DDIM grids end at t = T−1 and step down evenly: a 40-step grid walked to strength 0.025 is one real
        # step to t = 24 ("leading" would start with a near-identity step at t = 0 and waste an NFE)
        "timestep_spacing": "trailing",
    },
    # chosen on the trained weights by measurement (docs/retrospection.md, "The shipped model"): one DDIM
    # step up to t = 24 and one back (NFE 2) separated real from generated best of the 2-NFE settings;
    # the training record keeps the value the spec had when the weights were trained (t = 99)
    retrospection={"mode": "invert", "steps": 40, "strength": 0.025},
)

#: Every shipped retrospection model by name.
SHIPPED_RETROSPECTORS: dict[str, ShippedSpec] = {REAL_PHOTO_UNET.name: REAL_PHOTO_UNET}


def is_shipped_path(path: str | Path | None) -> bool:
    """``True`` for ``"hrrkit:<name>"`` (shipped weights), ``False`` for a filesystem path."""
    return isinstance(path, str) and path.startswith(SHIPPED_PREFIX)


def _spec(name: str | ShippedSpec) -> ShippedSpec:
    if isinstance(name, ShippedSpec):
        return name
    key = name[len(SHIPPED_PREFIX):] if name.startswith(SHIPPED_PREFIX) else name
    try:
        return SHIPPED_RETROSPECTORS[key]
    except KeyError:
        raise KeyError(
            f"unknown shipped retrospection model {name!r}; hrrkit ships {sorted(SHIPPED_RETROSPECTORS)} "
            f"(write path: \"{SHIPPED_PREFIX}<name>\")"
        ) from None


def build_unet(spec: str | ShippedSpec) -> torch.nn.Module:
    """A freshly initialised ``UNet2DModel`` of ``spec`` (the current torch seed decides the weights)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**_spec(spec).unet)


def weights_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def shipped_record(name: str | ShippedSpec = "real-photo-unet", weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The training record of shipped weights (``<name>.json``)."""
    spec = _spec(name)
    path = Path(weights_dir or WEIGHTS_DIR) / f"{spec.name}.json"
    if not path.is_file():
        raise ShippedWeightsError(
            f"{path}: the training record of the shipped retrospector {spec.name!r} is missing; "
            "reinstall hrrkit or retrain it with `python scripts/train_retrospector.py`"
        )
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=4)
def _load_verified(name: str, weights_dir: str) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors.torch import load_file

    spec = _spec(name)
    weights = Path(weights_dir) / f"{spec.name}.safetensors"
    if not weights.is_file():
        raise ShippedWeightsError(
            f"{weights}: the shipped retrospector {spec.name!r} has no weights here; reinstall hrrkit or "
            "retrain them with `python scripts/train_retrospector.py`"
        )
    record = shipped_record(spec, weights_dir)
    actual = weights_sha256(weights)
    if actual != record.get("weights_sha256"):
        raise ShippedWeightsError(
            f"{weights}: SHA-256 {actual[:16]}... differs from the training record's "
            f"{str(record.get('weights_sha256'))[:16]}... (a changed or truncated file); reinstall hrrkit or "
            "retrain with `python scripts/train_retrospector.py`"
        )
    if record.get("spec", {}).get("unet") != spec.to_dict()["unet"]:
        raise ShippedWeightsError(f"{weights}: the training record describes another architecture than the code")
    return load_file(str(weights)), actual


def load_shipped_unet(name: str | ShippedSpec = "real-photo-unet", weights_dir: str | Path | None = None):
    """The shipped ``UNet2DModel`` (eval mode, float32), its SHA-256 checked against the record.

    Raises:
        ShippedWeightsError: the weights or the record are missing or do not match.
        KeyError: no shipped model of that name.
    """
    spec = _spec(name)
    state, _ = _load_verified(spec.name, str(Path(weights_dir or WEIGHTS_DIR).resolve()))
    unet = build_unet(spec)
    unet.load_state_dict(state, strict=True)
    return unet.eval().requires_grad_(False)


def shipped_retrospector(
    name: str | ShippedSpec = "real-photo-unet",
    *,
    weights_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    **overrides: Any,
):
    """A :class:`~hrrkit.retrospect.pixel_ddim.PixelDDIMRetrospector` on shipped weights.

    Defaults are the spec's ``retrospection`` settings (DDIM round trip, 40-step trailing grid
    walked to strength 0.025: t = 24, NFE 2); ``overrides`` replace them (``steps=4, strength=1.0``
    for DIRE's full inversion at NFE 8, ``mode="one_step", timestep=100`` for NFE 1) and take every
    :class:`~hrrkit.retrospect.base.Retrospector` option (``tile_size``, ``dtype``, ...).
    """
    from hrrkit.retrospect.pixel_ddim import PixelDDIMRetrospector

    spec = _spec(name)
    unet = load_shipped_unet(spec, weights_dir)
    settings = {**spec.retrospection, **overrides}
    retro = PixelDDIMRetrospector(unet, dict(spec.schedule), **settings)
    return retro.to(device) if device is not None else retro
