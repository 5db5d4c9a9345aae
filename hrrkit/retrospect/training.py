"""The reproducible recipe that trains hrrkit's shipped retrospection model on real photographs only.

``python scripts/train_retrospector.py`` runs :func:`train_retrospector` with the default
:class:`RetrospectorTrainSettings` and writes ``<name>.safetensors`` (EMA weights, float32) and
``<name>.json`` (the training record) into ``hrrkit/retrospect/weights/``.

Data: :func:`real_photo_crops` cuts ``crop_size``-px windows from the photographs that
:func:`hrrkit.retrospect.photos.source_photographs` gives the role ``"train"`` (never a ``"test"``
photograph: the record lists every photograph used with its SHA-256, and a test checks the list).
Each crop is framed like a small photograph at a random scale: the photograph is resized
(antialiased Lanczos) so that its short side is log-uniform in ``[short_side_min, short_side_max]``
and a window is cut at a random position, mirrored with probability 1/2. Scales matter because MSR
hands the retrospector views rescaled by 0.5–2.

Objective: the DDPM ε-prediction loss, with timesteps drawn uniformly from ``[0, max_timestep)``:
the retrospector mostly walks low noise levels (its default DDIM round trip goes to t = 24;
strengths up to 0.4 stay inside the trained range; a full inversion leaves it, see the docs), so the capacity of a 0.16 M-parameter model is
spent there.

Reproducibility: everything random (crop pool, initialisation, batches, timesteps, noise) is drawn
from generators seeded by the settings; a rerun in the same process gives the same weights bit for
bit. Across machines it cannot: the float sums of convolutions and reductions are ordered by the CPU's
vector unit (``ATEN_CPU_CAPABILITY``), the BLAS kernels and the thread count, so the last bits of every
step differ. The shipped record therefore stores, besides the SHA-256 of the shipped file, the
quantities of :data:`REFERENCE_SHORT_RUN` that a test can compare within a tolerance on any machine:
its per-step losses, the L2 norm of each block's weights and the reconstruction of a fixed image
(:func:`reference_short_run`).
"""

from __future__ import annotations

import copy
import math
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrrkit.retrospect.shipped import SHIPPED_RETROSPECTORS, WEIGHTS_DIR, ShippedSpec, build_unet, weights_sha256

__all__ = [
    "RetrospectorTrainSettings",
    "real_photo_crops",
    "train_retrospector",
    "reference_short_run",
    "short_run_summary",
    "reference_image",
    "REFERENCE_SHORT_RUN",
]


@dataclass(frozen=True)
class RetrospectorTrainSettings:
    """Hyper-parameters of the shipped retrospection model.

    Attributes:
        steps: optimiser steps.
        batch_size: crops per step.
        learning_rate: AdamW peak learning rate (linear warm-up, cosine decay to 10 %).
        warmup_steps: warm-up length.
        ema_decay: decay of the exponential moving average whose weights are shipped.
        crop_size: side of the square training crops (pixels).
        crop_count: size of the pool of real crops.
        short_side_min / short_side_max: range (log-uniform) of the short side a photograph is
            resized to before a crop is cut (pixels).
        max_timestep: training timesteps are uniform in ``[0, max_timestep)``.
        crop_seed: seed of the crop pool.
        seed: seed of the initialisation, batches, timesteps and noise.
        grad_clip: gradient-norm clip.
    """

    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    ema_decay: float = 0.995
    crop_size: int = 32
    crop_count: int = 4096
    short_side_min: int = 48
    short_side_max: int = 768
    max_timestep: int = 400
    crop_seed: int = 20261201
    seed: int = 0
    grad_clip: float = 1.0


#: The seeded short run whose losses, weight norms and reconstruction the shipped record stores and the
#: tests reproduce (1 thread; 8 crops of 32 px from the same photographs).
REFERENCE_SHORT_RUN = RetrospectorTrainSettings(steps=3, batch_size=2, warmup_steps=1, crop_size=32, crop_count=8,
                                                short_side_min=64, short_side_max=128)


#: Number of log-spaced short-side lengths between ``short_side_min`` and ``short_side_max``.
SCALE_LEVELS = 12


def _learning_rate(step: int, settings: RetrospectorTrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def training_photographs() -> list[dict[str, str]]:
    """``[{"name", "sha256", "package", "licence"}]`` of the photographs training may use (role train)."""
    from hrrkit.retrospect.photos import source_photographs

    return [{"name": p.name, "sha256": p.sha256, "package": p.distribution, "licence": p.licence}
            for p in source_photographs(role="train")]


def real_photo_crops(settings: RetrospectorTrainSettings) -> np.ndarray:
    """``crop_count`` real crops ``(N, crop_size, crop_size, 3)`` uint8 from the train photographs.

    Photographs are used in turn (each gets the same share); the scale (one of :data:`SCALE_LEVELS`
    log-spaced short sides, never above the photograph's own), position and mirroring come from
    ``numpy.random.default_rng(crop_seed)``. Windows that are nearly flat (grey std < 4 of 255, e.g.
    the black borders of ``retina``) are redrawn.
    """
    from PIL import Image

    from hrrkit.retrospect.photos import load_source_photograph, source_photographs

    photos = [load_source_photograph(p.name) for p in source_photographs(role="train")]
    size = settings.crop_size
    rng = np.random.default_rng(settings.crop_seed)
    lo, hi = math.log(max(size, settings.short_side_min)), math.log(settings.short_side_max)
    # a fixed ladder of log-spaced scales (resizing a 2000 x 3000 photograph costs ~0.3 s: once per level)
    levels = sorted({int(round(math.exp(v))) for v in np.linspace(lo, hi, SCALE_LEVELS)})
    resized: dict[tuple[int, int], np.ndarray] = {}
    crops = np.empty((settings.crop_count, size, size, 3), dtype=np.uint8)
    for i in range(settings.crop_count):
        index = i % len(photos)
        photo = photos[index]
        for _ in range(64):
            short = max(size, min(levels[int(rng.integers(len(levels)))], min(photo.shape[:2])))
            key = (index, short)
            if key not in resized:
                h, w = photo.shape[:2]
                scale = short / min(h, w)
                target = (max(size, round(w * scale)), max(size, round(h * scale)))
                resized[key] = np.asarray(Image.fromarray(photo).resize(target, Image.Resampling.LANCZOS))
            image = resized[key]
            top = int(rng.integers(image.shape[0] - size + 1))
            left = int(rng.integers(image.shape[1] - size + 1))
            crop = image[top : top + size, left : left + size]
            if rng.integers(2):
                crop = crop[:, ::-1]
            if crop.astype(np.float32).mean(axis=2).std() >= 4.0:
                break
        crops[i] = crop
    return crops


def _fit(spec: ShippedSpec, settings: RetrospectorTrainSettings, progress: bool) -> tuple[torch.nn.Module, list[float]]:
    """Train ``spec`` with ``settings``; the EMA model (eval mode) and the loss of every step."""
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    crops = real_photo_crops(settings)
    data = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    torch.manual_seed(settings.seed)
    unet = build_unet(spec).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = DDPMScheduler(**spec.schedule)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    rng = torch.Generator().manual_seed(settings.seed)
    max_t = min(settings.max_timestep, scheduler.config.num_train_timesteps)
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc=f"train {spec.name}", disable=not progress, unit="step")
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, settings)
        clean = data[torch.randint(len(data), (settings.batch_size,), generator=rng)]
        noise = torch.randn(clean.shape, generator=rng)
        timesteps = torch.randint(max_t, (settings.batch_size,), generator=rng)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps).sample, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), settings.grad_clip)
        optimiser.step()
        with torch.no_grad():
            decay = min(settings.ema_decay, (1 + step) / (10 + step))
            for ema_param, param in zip(ema.parameters(), unet.parameters(), strict=True):
                ema_param.lerp_(param, 1 - decay)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    return ema, losses


def _write(
    spec: ShippedSpec, settings: RetrospectorTrainSettings, ema: torch.nn.Module, losses: list[float], seconds: float,
    out: Path,
) -> dict[str, Any]:
    """Write ``<name>.safetensors`` (the EMA weights) and ``<name>.json`` (the record) into ``out``."""
    import diffusers
    from safetensors.torch import save_file

    from hrrkit.utils.atomic import atomic_write_json, atomic_write_with

    out.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in ema.state_dict().items()}
    weights = out / f"{spec.name}.safetensors"
    atomic_write_with(weights, lambda tmp: save_file(state, str(tmp), metadata={"retrospector": spec.name}))
    record: dict[str, Any] = {
        "retrospector": spec.name,
        "spec": spec.to_dict(),
        "settings": asdict(settings),
        "photographs": training_photographs(),
        "parameters": sum(p.numel() for p in ema.parameters()),
        "weights_bytes": weights.stat().st_size,
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
        "loss_every_50": [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)],
        "seconds": seconds,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "machine": _machine(),
        "weights_sha256": weights_sha256(weights),
    }
    atomic_write_json(out / f"{spec.name}.json", record)
    return record


def _machine() -> str:
    """CPU, vector unit torch dispatches to and thread count: what bit-exact results depend on."""
    return (f"{platform.machine()} {platform.processor() or ''} {torch.backends.cpu.get_cpu_capability()} "
            f"threads={torch.get_num_threads()}").replace("  ", " ")


def train_retrospector(
    spec: str | ShippedSpec = "real-photo-unet",
    settings: RetrospectorTrainSettings = RetrospectorTrainSettings(),
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    reference_run: bool = True,
) -> dict[str, Any]:
    """Train one shipped retrospection model from scratch; write its weights and training record.

    ``reference_run``: also run :data:`REFERENCE_SHORT_RUN` (one thread) and store its summary
    (:func:`reference_short_run`) in the record, so a test can check that this recipe still
    reproduces itself on any machine.
    Returns the training record (also written as ``<name>.json`` in ``out_dir``).
    """
    from hrrkit.utils.atomic import atomic_write_json

    spec = SHIPPED_RETROSPECTORS[spec] if isinstance(spec, str) else spec
    out = Path(out_dir or WEIGHTS_DIR)
    started = time.perf_counter()
    ema, losses = _fit(spec, settings, progress)
    record = _write(spec, settings, ema, losses, round(time.perf_counter() - started, 1), out)
    if reference_run:
        with tempfile.TemporaryDirectory(prefix="hrrkit-reference-run-") as scratch:
            record["reference_short_run"] = reference_short_run(spec, scratch)
        atomic_write_json(out / f"{spec.name}.json", record)
    return record


def reference_image(size: int = 32) -> torch.Tensor:
    """The fixed image the reference run reconstructs: ``(1, 3, size, size)`` float32 in ``[-1, 1]``.

    Built from integer arithmetic only (a ramp, a 4-px checkerboard and a diagonal stripe pattern),
    so every machine gets the same bits without a file, a random generator or a libm call.
    """
    i = torch.arange(size, dtype=torch.int64).view(size, 1)
    j = torch.arange(size, dtype=torch.int64).view(1, size)
    ramp = (i + j).double() / (2 * (size - 1))
    checker = ((i // 4 + j // 4) % 2).double()
    stripes = ((i * 3 + j * 5) % 11).double() / 10
    image = torch.stack([ramp, checker, stripes]) * 2 - 1
    return image.float().unsqueeze(0)


#: Side of the pooled grid of the reference reconstruction that the record stores (3 x 4 x 4 values).
RECONSTRUCTION_GRID = 4


def _block_norms(module: torch.nn.Module) -> dict[str, float]:
    """L2 norm of all weights of each top-level block (``conv_in``, ``down_blocks.0``, ...)."""
    squares: dict[str, float] = {}
    for name, value in module.state_dict().items():
        parts = name.split(".")
        block = ".".join(parts[:2]) if parts[0].endswith("blocks") else parts[0]
        squares[block] = squares.get(block, 0.0) + float(value.double().pow(2).sum())
    return {block: math.sqrt(total) for block, total in squares.items()}


def short_run_summary(spec: str | ShippedSpec, unet: torch.nn.Module) -> dict[str, Any]:
    """What a trained ``unet`` gives that can be compared across machines within a tolerance.

    ``weight_norms``: :func:`_block_norms`; ``reconstruction``: the spec's retrospection of
    :func:`reference_image`, average-pooled to a ``3 x 4 x 4`` grid (values in ``[-1, 1]``, nested
    lists ``[channel][row][column]``); ``residual_mean``: mean ``|x - x_hat|`` over all pixels.
    """
    from hrrkit.retrospect.pixel_ddim import PixelDDIMRetrospector

    spec = SHIPPED_RETROSPECTORS[spec] if isinstance(spec, str) else spec
    retro = PixelDDIMRetrospector(unet.eval(), dict(spec.schedule), **spec.retrospection)
    with torch.no_grad():
        out = retro.retrospect(reference_image())
    pooled = torch.nn.functional.adaptive_avg_pool2d(out.reconstruction, RECONSTRUCTION_GRID)[0]
    return {
        "weight_norms": _block_norms(unet),
        "reconstruction": pooled.double().tolist(),
        "residual_mean": float(out.residual.double().mean()),
    }


def reference_short_run(spec: str | ShippedSpec, out_dir: str | Path, *, threads: int = 1) -> dict[str, Any]:
    """Train :data:`REFERENCE_SHORT_RUN` with ``threads`` threads into ``out_dir``; what it gives.

    Returns ``settings``, ``losses`` (every step), :func:`short_run_summary`'s ``weight_norms``,
    ``reconstruction`` and ``residual_mean``, and, exact only on the same torch build, CPU vector unit
    and thread count, the ``weights_sha256`` of the weights file with the ``machine`` that made it.
    """
    spec = SHIPPED_RETROSPECTORS[spec] if isinstance(spec, str) else spec
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ema, losses = _fit(spec, REFERENCE_SHORT_RUN, progress=False)
        record = _write(spec, REFERENCE_SHORT_RUN, ema, losses, 0.0, Path(out_dir))
        summary = short_run_summary(spec, ema)
    finally:
        torch.set_num_threads(before)
    return {"settings": record["settings"], "losses": losses, **summary, "threads": threads,
            "weights_sha256": record["weights_sha256"], "machine": record["machine"], "torch": torch.__version__}
