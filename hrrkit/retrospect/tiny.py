"""Tiny randomly initialised diffusers models: for tests, benchmarks and trying the CLI offline.

They have the real classes (``UNet2DModel``, ``UNet2DConditionModel``, ``AutoencoderKL``) and real
folder layouts, with the smallest widths diffusers accepts, so every code path of a real model
runs in milliseconds on a CPU. Their reconstructions are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel

from hrrkit.retrospect.ddim import LATENT_SCHEDULER_DEFAULTS, PIXEL_SCHEDULER_DEFAULTS

TINY_CROSS_ATTENTION_DIM = 8


def tiny_pixel_unet(seed: int = 0, out_channels: int = 3) -> UNet2DModel:
    """A pixel-space UNet2DModel, down-sampling factor 2, ~20k parameters."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    ).eval()


def tiny_latent_unet(seed: int = 0) -> UNet2DConditionModel:
    """A 4-channel latent UNet2DConditionModel with cross-attention, down-sampling factor 2."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
        attention_head_dim=2,
    ).eval()


def tiny_vae(seed: int = 0, latent_channels: int = 4) -> AutoencoderKL:
    """An AutoencoderKL with 4 latent channels (SD 1/2, SDXL; 16: SD3, FLUX) and image/latent factor 2."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    ).eval()


def save_tiny_pipeline(path: str | Path, kind: str = "latent", seed: int = 0) -> Path:
    """Write a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``, ``scheduler/``).

    ``kind="pixel"`` writes a DDPM-like pipeline (pixel UNet), ``"latent"`` an LDM-like one
    (VAE + conditional UNet; used by the latent and autoencoder retrospectors).
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    if kind == "pixel":
        tiny_pixel_unet(seed).save_pretrained(root / "unet")
        DDIMScheduler(**PIXEL_SCHEDULER_DEFAULTS).save_pretrained(root / "scheduler")
        index = {"_class_name": "DDIMPipeline", "unet": ["diffusers", "UNet2DModel"],
                 "scheduler": ["diffusers", "DDIMScheduler"]}  # fmt: skip
    elif kind == "latent":
        tiny_latent_unet(seed).save_pretrained(root / "unet")
        tiny_vae(seed + 1).save_pretrained(root / "vae")
        DDIMScheduler(**LATENT_SCHEDULER_DEFAULTS).save_pretrained(root / "scheduler")
        index = {"_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                 "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}  # fmt: skip
    else:
        raise ValueError(f"kind must be 'pixel' or 'latent', got {kind!r}")
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    return root
