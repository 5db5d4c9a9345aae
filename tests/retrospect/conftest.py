"""Tiny diffusers models saved to a temporary folder once per session and loaded back."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models are far too small to gain from intra-op threads; on a shared 2-core machine
    the thread hand-offs cost 5-10× the work. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pixel_pipeline(tmp_path_factory) -> str:
    from hrrkit.retrospect.tiny import save_tiny_pipeline

    return str(save_tiny_pipeline(tmp_path_factory.mktemp("pixel") / "pipe", "pixel"))


@pytest.fixture(scope="session")
def latent_pipeline(tmp_path_factory) -> str:
    from hrrkit.retrospect.tiny import save_tiny_pipeline

    return str(save_tiny_pipeline(tmp_path_factory.mktemp("latent") / "pipe", "latent"))


class GaussianOracleUNet(nn.Module):
    """The exact ε-prediction for data x₀ ~ N(μ, s² I) under the DDPM forward process.

    x_t = √ᾱ x₀ + √(1−ᾱ) ε is Gaussian with mean √ᾱ μ and variance ᾱ s² + 1 − ᾱ, so
    E[ε | x_t] = √(1−ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ): a closed-form "UNet" whose DDIM ODE is exact,
    leaving only the time discretisation as error.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, mean: float, std: float, channels: int = 3):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float64))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float64))
        self.config = types.SimpleNamespace(in_channels=channels, out_channels=channels, sample_size=8)

    def forward(self, sample, timestep, return_dict=True, **_):
        a = self.alphas_cumprod[int(timestep)]
        x = sample.double()
        eps = (1 - a).sqrt() * (x - a.sqrt() * self.mean) / (a * self.std**2 + 1 - a)
        eps = eps.to(sample.dtype)
        return (eps,) if not return_dict else types.SimpleNamespace(sample=eps)
