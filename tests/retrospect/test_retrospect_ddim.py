"""DDIM inversion + reconstruction against an independent hand-written DDIM (η = 0), and convergence
on a closed-form exact noise predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import GaussianOracleUNet
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

from hrrkit.retrospect import LatentRetrospector, PixelDDIMRetrospector
from hrrkit.retrospect.tiny import tiny_pixel_unet
from hrrkit.testing import Tolerance, assert_close

TOL = Tolerance(rel=2e-5, atol=2e-5, rtol=1e-4)


def betas_alphas_cumprod(beta_start: float, beta_end: float, schedule: str, n: int = 1000) -> np.ndarray:
    """ᾱ_t in float64, written from the DDPM / Stable Diffusion definitions (not from diffusers)."""
    if schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
    elif schedule == "scaled_linear":
        betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), n, dtype=np.float64) ** 2
    else:
        raise ValueError(schedule)
    return np.cumprod(1.0 - betas)


def reference_ddim_round_trip(eps_fn, x0, *, steps, used, alphas_cumprod, offset, alpha_one, clip):
    """Hand-written DDIM (Song et al. 2021, eq. 12 with σ = 0), leading timestep grid.

    Inversion step s → t uses ε(x_s, t) (diffusers' convention); sampling t → s uses ε(x_t, t).
    """
    ratio = 1000 // steps
    grid = [i * ratio + offset for i in range(steps)][:used]
    boundary = 1.0 if alpha_one else float(alphas_cumprod[0])

    def level(t):
        return float(alphas_cumprod[t]) if t >= 0 else boundary

    def x0_of(x, eps, a):
        out = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        return out.clamp(-1, 1) if clip else out

    x = x0.double()
    for t in grid:
        a_s, a_t = level(t - ratio), level(t)
        eps = eps_fn(x, t)
        x = math.sqrt(a_t) * x0_of(x, eps, a_s) + math.sqrt(1 - a_t) * eps
    for t in reversed(grid):
        a_t, a_s = level(t), level(t - ratio)
        eps = eps_fn(x, t)
        x = math.sqrt(a_s) * x0_of(x, eps, a_t) + math.sqrt(1 - a_s) * eps
    return x


def _quiet(unet):
    """Scale the random UNet's output layer so its ε stays O(0.1) and trajectories stay bounded."""
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return unet


@pytest.mark.parametrize("steps,strength,clip", [(5, 1.0, False), (8, 0.5, True)])
def test_pixel_ddim_matches_hand_written(tmp_path, steps, strength, clip):
    _quiet(tiny_pixel_unet(seed=3)).save_pretrained(tmp_path / "unet")
    unet = UNet2DModel.from_pretrained(tmp_path / "unet")
    retro = PixelDDIMRetrospector(unet, steps=steps, strength=strength, clip_sample=clip, clamp=False)
    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = retro.retrospect(x)

    reference_unet = UNet2DModel.from_pretrained(tmp_path / "unet")

    def eps_fn(xt, t):
        with torch.no_grad():
            return reference_unet(xt.float(), torch.tensor(t)).sample.double()

    expected = reference_ddim_round_trip(
        eps_fn, x, steps=steps, used=int(steps * strength), offset=0, alpha_one=True, clip=clip,
        alphas_cumprod=betas_alphas_cumprod(1e-4, 0.02, "linear"),
    )  # fmt: skip
    assert_close(out.reconstruction, expected, tol=TOL, name="pixel DDIM reconstruction")
    assert_close(out.residual, (x.double() - expected).abs(), tol=TOL, name="residual")
    assert out.latent_error is None


def test_learned_variance_half_is_ignored(tmp_path):
    """ADM predicts [ε, variance] (6 channels): DDIM η=0 must use the ε half only."""
    unet6 = _quiet(tiny_pixel_unet(seed=5, out_channels=6))
    retro = PixelDDIMRetrospector(unet6, steps=4, clip_sample=False, clamp=False)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1

    def eps_fn(xt, t):
        with torch.no_grad():
            return unet6(xt.float(), torch.tensor(t)).sample[:, :3].double()

    expected = reference_ddim_round_trip(
        eps_fn, x, steps=4, used=4, offset=0, alpha_one=True, clip=False,
        alphas_cumprod=betas_alphas_cumprod(1e-4, 0.02, "linear"),
    )  # fmt: skip
    assert_close(retro(x), expected, tol=TOL)


def test_latent_invert_matches_hand_written(latent_pipeline):
    retro = LatentRetrospector.from_pretrained(latent_pipeline, mode="invert", steps=6, strength=0.5, clamp=False)
    vae = AutoencoderKL.from_pretrained(latent_pipeline, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(latent_pipeline, subfolder="unet")
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(3)) * 2 - 1
    out = retro.retrospect(x)

    scale = vae.config.scaling_factor
    padded = torch.nn.functional.pad(x, (0, 16 - 13, 0, 12 - 9), mode="reflect")  # multiple 2·2 = 4
    with torch.no_grad():
        z0 = vae.encode(padded).latent_dist.mean * scale
    cond = torch.zeros(2, 77, unet.config.cross_attention_dim)

    def eps_fn(zt, t):
        with torch.no_grad():
            return unet(zt.float(), torch.tensor(t), encoder_hidden_states=cond).sample.double()

    z_hat = reference_ddim_round_trip(
        eps_fn, z0, steps=6, used=3, offset=1, alpha_one=False, clip=False,
        alphas_cumprod=betas_alphas_cumprod(0.00085, 0.012, "scaled_linear"),
    )  # fmt: skip
    with torch.no_grad():
        expected = vae.decode(z_hat.float() / scale).sample[..., :9, :13]
    assert_close(out.reconstruction, expected, tol=Tolerance(rel=1e-4, atol=1e-4, rtol=1e-3))
    assert_close(out.latent_error, (z0.double() - z_hat).abs()[..., :5, :7], tol=Tolerance(1e-4, 1e-4, 1e-3))


def test_latent_one_step_matches_formula(latent_pipeline):
    retro = LatentRetrospector.from_pretrained(latent_pipeline, timestep=300, seed=7, clamp=False)
    vae = AutoencoderKL.from_pretrained(latent_pipeline, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(latent_pipeline, subfolder="unet")
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = retro.retrospect(x)

    a = float(betas_alphas_cumprod(0.00085, 0.012, "scaled_linear")[300])
    with torch.no_grad():
        z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        eps = torch.randn((1, *z0.shape[1:]), generator=torch.Generator().manual_seed(7))
        zt = math.sqrt(a) * z0 + math.sqrt(1 - a) * eps
        pred = unet(zt, torch.tensor(300), encoder_hidden_states=torch.zeros(3, 77, 8)).sample
        z_hat = (zt - math.sqrt(1 - a) * pred) / math.sqrt(a)
        expected = vae.decode(z_hat / vae.config.scaling_factor).sample
    assert_close(out.reconstruction, expected, tol=Tolerance(rel=1e-4, atol=1e-4, rtol=1e-3))
    assert_close(out.latent_error, (z0 - z_hat).abs(), tol=Tolerance(rel=1e-4, atol=1e-4, rtol=1e-3))
    # the fixed noise does not depend on the batch: image 0 alone gives the same result
    alone = retro.retrospect(x[:1])
    assert_close(alone.reconstruction, out.reconstruction[:1], tol=Tolerance(rel=1e-5, atol=1e-5, rtol=1e-4))


def test_reconstruction_error_falls_with_steps():
    """With the exact ε of a Gaussian data set the DDIM ODE is exact; only discretisation remains,
    so the round-trip error must fall steadily (≈ 1/steps) as the grid refines."""
    from diffusers import DDIMScheduler

    from hrrkit.retrospect.ddim import PIXEL_SCHEDULER_DEFAULTS

    mean, std = 0.1, 0.3
    oracle = GaussianOracleUNet(DDIMScheduler(**PIXEL_SCHEDULER_DEFAULTS).alphas_cumprod, mean, std)
    x = mean + std * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for steps in (2, 4, 8, 16, 32, 64, 128):
        retro = PixelDDIMRetrospector(oracle, steps=steps, clip_sample=False, clamp=False, dtype="float64")
        recon = retro(x)
        errors.append(((recon - x).norm() / x.norm()).item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # first-order convergence once the grid is fine: each doubling of steps about halves the error
    assert all(b < 0.6 * a for a, b in zip(errors[3:], errors[4:])), errors
    assert errors[-1] < 0.05, errors
