"""The reproducible recipe that trains the mini-benchmark's generators on real crops.

``python scripts/train_mini_generators.py`` runs :func:`train_generator` for every generator in
:data:`~hrrkit.datasets.generators.GENERATORS` and writes ``<name>.safetensors`` (EMA weights, fp32)
and ``<name>.json`` (the spec, these settings, the seed, the loss curve, versions, timing and the
weights' SHA-256) into ``hrrkit/datasets/weights/``. The weights shipped with hrrkit were produced by
that command with the default settings, one process per generator with one thread each
(``OMP_NUM_THREADS=1 python scripts/train_mini_generators.py --only <name>``, about 10 minutes each on
a shared 2-core CPU); a rerun with the same torch build, CPU and thread count reproduces them bit for
bit, elsewhere up to float rounding.

The training crops come from :func:`~hrrkit.datasets.sources.training_crops` with their own seed
(``TrainSettings.crop_seed``), distinct from every seed the benchmark build uses, so the detectors'
real images are never the generators' training images (they are cut from the same photographs).
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrrkit.datasets.generators import (
    GENERATORS,
    TRAIN_RESOLUTION,
    WEIGHTS_DIR,
    GeneratorSpec,
    build_scheduler,
    build_unet,
)
from hrrkit.datasets.sources import training_crops

__all__ = ["TrainSettings", "train_generator"]


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters of the generators (the same for both).

    Attributes:
        steps: optimiser steps.
        batch_size: crops per step.
        learning_rate: AdamW peak learning rate (linear warm-up, cosine decay to 10 %).
        warmup_steps: warm-up length.
        weight_decay: AdamW weight decay.
        ema_decay: decay of the exponential moving average whose weights are shipped.
        crop_count: size of the pool of real training crops (``TRAIN_RESOLUTION`` pixels a side).
        crop_seed: seed of the crop pool.
        seed: seed of the initialisation, batches, timesteps and noise.
        grad_clip: gradient-norm clip.
    """

    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    ema_decay: float = 0.99
    crop_count: int = 4096
    crop_seed: int = 20250301
    seed: int = 0
    grad_clip: float = 1.0


def _learning_rate(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))


def train_generator(
    spec: str | GeneratorSpec,
    settings: TrainSettings = TrainSettings(),
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    crops: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train one generator from scratch and write its weights and training record to ``out_dir``.

    ``crops`` (``uint8``, ``(N, 32, 32, 3)``) replaces the default crop pool (tests use a tiny one).
    Returns the training record (also written as ``<name>.json``).
    """
    import diffusers
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from hrrkit.datasets.generators import _file_sha256
    from hrrkit.utils.atomic import atomic_write_json, atomic_write_with

    spec = GENERATORS[spec] if isinstance(spec, str) else spec
    out = Path(out_dir or WEIGHTS_DIR)
    started = time.perf_counter()
    if crops is None:
        crops = training_crops(settings.crop_count, TRAIN_RESOLUTION, settings.crop_seed)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, H, W, 3), got {crops.dtype} {crops.shape}")
    data = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    torch.manual_seed(settings.seed)
    unet = build_unet(spec).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_scheduler(spec, for_sampling=False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    rng = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc=f"train {spec.name}", disable=not progress, unit="step")
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, settings)
        index = torch.randint(len(data), (settings.batch_size,), generator=rng)
        clean = data[index]
        flip = torch.rand(settings.batch_size, generator=rng) < 0.5
        clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        noise = torch.randn(clean.shape, generator=rng)
        timesteps = torch.randint(scheduler.config.num_train_timesteps, (settings.batch_size,), generator=rng)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        if spec.schedule["prediction_type"] == "v_prediction":
            target = scheduler.get_velocity(clean, noise, timesteps)
        else:
            target = noise
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps).sample, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), settings.grad_clip)
        optimiser.step()
        with torch.no_grad():
            decay = min(settings.ema_decay, (1 + step) / (10 + step))
            for ema_param, param in zip(ema.parameters(), unet.parameters()):
                ema_param.lerp_(param, 1 - decay)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")

    state = {key: value.detach().contiguous() for key, value in ema.state_dict().items()}
    weights = out / f"{spec.name}.safetensors"
    atomic_write_with(weights, lambda tmp: save_file(state, str(tmp), metadata={"generator": spec.name}))
    record = {
        "generator": spec.name,
        "spec": spec.to_dict(),
        "settings": asdict(settings),
        "train_resolution": TRAIN_RESOLUTION,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
        "loss_every_50": [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)],
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()}".strip(),
        "weights_sha256": _file_sha256(weights),
    }
    atomic_write_json(out / f"{spec.name}.json", record)
    return record
