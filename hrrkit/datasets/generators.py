"""The mini-benchmark's two small pixel-space diffusion generators, and their samplers.

Both are diffusers ``UNet2DModel``s trained by :mod:`hrrkit.datasets.recipe` on 32x32 real crops and
shipped as safetensors in ``hrrkit/datasets/weights/``. They differ in every part a cross-generator
test should probe:

==================  ===========================================  ==============================================
                    ``unet-ddim`` (the seen generator)           ``attn-unet-ddpm`` (the held-out generator)
==================  ===========================================  ==============================================
architecture        3 levels (32, 64, 64) channels, plain         3 levels (32, 48, 96), self-attention at the two
                    resnet blocks, conv down / nearest up         lower levels, resnet down/up-sampling,
                                                                  scale-shift time conditioning
noise schedule      linear betas 1e-4 .. 0.02, 1000 steps         cosine (``squaredcos_cap_v2``), 1000 steps
target              epsilon                                      v (velocity)
sampler             DDIM, eta = 0 (deterministic), 10 steps      DDPM ancestral (stochastic), 12 steps
==================  ===========================================  ==============================================

Both are fully convolutional (the attention layers take any token count), so they sample at any size
that is a multiple of :data:`SIZE_MULTIPLE`; :func:`sample_images` samples at the next multiple and
cuts a seeded window of the size asked for, so odd sizes come from the model as well.

Every sample has its own ``torch.Generator`` seeded from its recorded seed for the initial noise and
(DDPM) for every ancestral step, so a sample depends on its seed and not on which other samples share
its batch, up to float rounding of batched convolutions (``regenerate`` in the tests checks this).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "GENERATORS",
    "HELDOUT_GENERATOR",
    "SEEN_GENERATOR",
    "SIZE_MULTIPLE",
    "TRAIN_RESOLUTION",
    "WEIGHTS_DIR",
    "GeneratorSpec",
    "LoadedGenerator",
    "WeightsUnavailableError",
    "build_scheduler",
    "build_unet",
    "load_generator",
    "sample_images",
    "weights_digest",
]

#: Side of the square crops the generators are trained on (pixels).
TRAIN_RESOLUTION = 32
#: Both UNets downsample twice, so a sampled image's sides must be multiples of 4.
SIZE_MULTIPLE = 4
#: Where the shipped weights live (``<name>.safetensors`` + ``<name>.json`` with the training record).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsUnavailableError(FileNotFoundError):
    """A generator's shipped weights are missing or do not match their recorded hash."""


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything that defines one generator: model config, noise schedule and sampler.

    Attributes:
        name: the generator's name in manifests (``generator`` column).
        unet: keyword arguments of ``diffusers.UNet2DModel``.
        schedule: keyword arguments of the diffusers scheduler used for training and sampling.
        sampler: ``"ddim"`` (``DDIMScheduler``) or ``"ddpm"`` (``DDPMScheduler``, ancestral).
        sampling_steps: network evaluations per sample (NFE).
        eta: DDIM's eta (0 = deterministic); ignored by DDPM.
    """

    name: str
    unet: dict[str, Any] = field(hash=False)
    schedule: dict[str, Any] = field(hash=False)
    sampler: str
    sampling_steps: int
    eta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


_COMMON_UNET = dict(sample_size=TRAIN_RESOLUTION, in_channels=3, out_channels=3, norm_num_groups=8)

GENERATORS: dict[str, GeneratorSpec] = {
    spec.name: spec
    for spec in (
        GeneratorSpec(
            name="unet-ddim",
            unet=dict(
                _COMMON_UNET,
                block_out_channels=(32, 64, 64),
                down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
                layers_per_block=1,
            ),
            schedule=dict(
                num_train_timesteps=1000,
                beta_schedule="linear",
                beta_start=1e-4,
                beta_end=0.02,
                prediction_type="epsilon",
                clip_sample=True,
            ),
            sampler="ddim",
            sampling_steps=10,
            eta=0.0,
        ),
        GeneratorSpec(
            name="attn-unet-ddpm",
            unet=dict(
                _COMMON_UNET,
                block_out_channels=(32, 48, 96),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                layers_per_block=1,
                attention_head_dim=16,
                resnet_time_scale_shift="scale_shift",
                downsample_type="resnet",
                upsample_type="resnet",
            ),
            schedule=dict(
                num_train_timesteps=1000,
                beta_schedule="squaredcos_cap_v2",
                prediction_type="v_prediction",
                clip_sample=True,
            ),
            sampler="ddpm",
            sampling_steps=12,
        ),
    )
}

#: The generator the detectors train on, and the one held out for the cross-generator test.
SEEN_GENERATOR = "unet-ddim"
HELDOUT_GENERATOR = "attn-unet-ddpm"


def _spec(name: str | GeneratorSpec) -> GeneratorSpec:
    if isinstance(name, GeneratorSpec):
        return name
    if name not in GENERATORS:
        raise KeyError(f"unknown mini-benchmark generator {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name]


def build_unet(spec: str | GeneratorSpec) -> torch.nn.Module:
    """A freshly initialised ``UNet2DModel`` with the generator's config (seed torch first)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**_spec(spec).unet)


def build_scheduler(spec: str | GeneratorSpec, *, for_sampling: bool = True):
    """The generator's diffusers scheduler: its sampler when ``for_sampling``, else DDPM for training.

    Training only uses ``add_noise``/``get_velocity``, which both schedulers share; DDPM is used there
    so that the noise schedule is exactly the one the sampler inverts.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    spec = _spec(spec)
    if not for_sampling or spec.sampler == "ddpm":
        return DDPMScheduler(**spec.schedule, variance_type="fixed_small")
    if spec.sampler == "ddim":
        return DDIMScheduler(**spec.schedule, set_alpha_to_one=True, timestep_spacing="leading")
    raise ValueError(f"{spec.name}: unknown sampler {spec.sampler!r} (expected 'ddim' or 'ddpm')")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedGenerator:
    """A generator ready to sample: the spec, the UNet in eval mode and its training record."""

    spec: GeneratorSpec
    unet: torch.nn.Module
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name


def weights_digest(name: str | GeneratorSpec, weights_dir: str | Path | None = None) -> str:
    """SHA-256 of the generator's safetensors file (part of the mini-benchmark's cache key)."""
    spec = _spec(name)
    path = Path(weights_dir or WEIGHTS_DIR) / f"{spec.name}.safetensors"
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path}: the trained weights of {spec.name!r} are missing; train them with "
            f"`python scripts/train_mini_generators.py` (see docs/mini_benchmark.md)"
        )
    return _file_sha256(path)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, weights_dir: str) -> LoadedGenerator:
    from safetensors.torch import load_file

    spec = _spec(name)
    folder = Path(weights_dir)
    weights = folder / f"{spec.name}.safetensors"
    record_path = folder / f"{spec.name}.json"
    digest = weights_digest(spec, folder)
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    expected = record.get("weights_sha256")
    if expected is not None and expected != digest:
        raise WeightsUnavailableError(f"{weights}: sha256 {digest} differs from the training record's {expected}")
    if record.get("spec") not in (None, spec.to_dict()):
        raise WeightsUnavailableError(
            f"{weights}: was trained for a different {spec.name!r} config than hrrkit's; retrain it "
            f"with `python scripts/train_mini_generators.py`"
        )
    unet = build_unet(spec)
    state = load_file(str(weights))
    unet.load_state_dict({key: value.float() for key, value in state.items()})
    unet.eval().requires_grad_(False)
    return LoadedGenerator(spec, unet, record)


def load_generator(name: str | GeneratorSpec, weights_dir: str | Path | None = None) -> LoadedGenerator:
    """Load a shipped generator (cached per process). Raises :class:`WeightsUnavailableError`."""
    spec = _spec(name)
    return _load_cached(spec.name, str(Path(weights_dir or WEIGHTS_DIR).resolve()))


def _padded(side: int) -> int:
    return -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE


@torch.inference_mode()
def sample_images(
    generator: LoadedGenerator,
    seeds: Sequence[int],
    size: tuple[int, int],
    *,
    steps: int | None = None,
) -> np.ndarray:
    """Sample one image per seed with the generator's own sampler, all at ``size = (height, width)``.

    The model samples at the sides rounded up to a multiple of :data:`SIZE_MULTIPLE`; a window of
    ``size`` is cut at an offset drawn from the same per-sample seed. ``steps`` overrides the spec's
    sampling steps (NFE). Returns ``uint8`` of shape ``(len(seeds), height, width, 3)``.
    """
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    if not seeds:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    spec = generator.spec
    pad_h, pad_w = _padded(height), _padded(width)
    rngs = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    sample = torch.cat([torch.randn((1, 3, pad_h, pad_w), generator=g) for g in rngs])
    # the crop offset comes from the same stream, drawn after the initial noise
    offsets = [
        (int(torch.randint(pad_h - height + 1, (1,), generator=g)), int(torch.randint(pad_w - width + 1, (1,), generator=g)))
        for g in rngs
    ]
    scheduler = build_scheduler(spec)
    scheduler.set_timesteps(int(steps or spec.sampling_steps))
    sample = sample * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_output = generator.unet(sample, t).sample
        if spec.sampler == "ddim":
            sample = scheduler.step(model_output, t, sample, eta=spec.eta, generator=rngs).prev_sample
        else:
            sample = scheduler.step(model_output, t, sample, generator=rngs).prev_sample
    pixels = ((sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.stack([pixels[i, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)])
