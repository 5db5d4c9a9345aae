"""NFE reporting equals the UNet calls a forward hook counts; the callable contract MSR relies on."""

from __future__ import annotations

import pytest
import torch

from hrrkit.retrospect import AutoencoderRetrospector, LatentRetrospector, PixelDDIMRetrospector
from hrrkit.retrospect.base import nfe_per_image
from hrrkit.retrospect.bench import DIRE_NFE, benchmark, count_unet_calls, format_table
from hrrkit.retrospect.tiny import tiny_latent_unet, tiny_pixel_unet, tiny_vae


def _cases():
    return {
        "pixel 5+5": lambda: PixelDDIMRetrospector(tiny_pixel_unet(), steps=5),
        "pixel strength": lambda: PixelDDIMRetrospector(tiny_pixel_unet(), steps=10, strength=0.3),
        "latent one-step": lambda: LatentRetrospector(tiny_vae(), tiny_latent_unet()),
        "latent invert": lambda: LatentRetrospector(tiny_vae(), tiny_latent_unet(), mode="invert", steps=4),
        "autoencoder": lambda: AutoencoderRetrospector(tiny_vae()),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_reported_nfe_equals_hooked_unet_calls(name):
    retro = _cases()[name]()
    x = torch.rand(3, 3, 9, 11) * 2 - 1
    calls, reported = count_unet_calls(retro, x)  # one batch, one network call per step
    assert reported == calls == retro.cost((9, 11)).nfe


def test_nfe_with_tiles_one_tile_per_call():
    retro = PixelDDIMRetrospector(tiny_pixel_unet(), steps=3, tile_size=8, tile_overlap=2, micro_batch=1)
    x = torch.rand(1, 3, 13, 19) * 2 - 1
    calls, reported = count_unet_calls(retro, x)
    cost = retro.cost((13, 19))
    assert cost.tiles == 6 and cost.unet_evals == 6
    assert reported == calls == cost.nfe == 36


@pytest.mark.parametrize(
    ("calls", "batch", "tiles", "micro_batch", "expected"),
    [
        (10, 3, 1, None, 10),  # whole batch in each call: 10 steps
        (36, 1, 6, 1, 36),  # one tile per call: 6 tiles x 6 steps
        (12, 2, 6, 5, 24),  # 12 tiles in chunks of 5 -> 3 chunks, so 4 steps; x 6 tiles
        (4, 2, 6, 64, 24),  # micro batch larger than the work: one chunk
        (0, 2, 3, None, 0),  # an autoencoder makes no UNet calls
        (5, 0, 3, None, 0),  # an empty batch costs nothing (no division by zero)
    ],
)
def test_nfe_per_image_converts_calls_over_a_batch(calls, batch, tiles, micro_batch, expected):
    assert nfe_per_image(calls, batch, tiles, micro_batch) == expected


def test_latent_one_step_is_8x_cheaper_than_dire():
    dire = PixelDDIMRetrospector(tiny_pixel_unet(), steps=20)
    one_step = LatentRetrospector(tiny_vae(), tiny_latent_unet(), mode="one_step")
    assert dire.cost().nfe == DIRE_NFE
    assert one_step.cost().nfe * 8 <= dire.cost().nfe


def test_benchmark_rows_and_table():
    rows = benchmark(
        {"latent one-step": lambda: LatentRetrospector(tiny_vae(), tiny_latent_unet()),
         "pixel 2+2": lambda: PixelDDIMRetrospector(tiny_pixel_unet(), steps=2)},
        sizes=[(8, 8)], batch=1, repeats=1, device="cpu",
    )  # fmt: skip
    assert [(r.name, r.nfe) for r in rows] == [("latent one-step", 1), ("pixel 2+2", 4)]
    assert all(r.images_per_s > 0 for r in rows)
    assert "40×" in format_table(rows)  # one-step vs DIRE's 40


def test_callable_contract_for_msr():
    """``retro(x)`` keeps shape, dtype and device; it never tracks grads into the diffusion model,
    and its output can be used in a graph whose gradients flow through ``x`` elsewhere."""
    retro = AutoencoderRetrospector(tiny_vae())
    x = (torch.rand(2, 3, 10, 7, dtype=torch.float64) * 2 - 1).requires_grad_()
    recon = retro(x)
    assert recon.shape == x.shape and recon.dtype == x.dtype and recon.device == x.device
    assert not recon.requires_grad
    loss = ((x - recon) ** 2).sum()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * (x - recon).detach())
    assert all(p.grad is None for p in retro.vae.parameters())


def test_bad_input_is_named():
    retro = AutoencoderRetrospector(tiny_vae())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        retro(torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        retro(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        retro(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_config_hash_tracks_settings_and_weights():
    base = PixelDDIMRetrospector(tiny_pixel_unet(seed=0), steps=5)
    assert base.config_hash() == PixelDDIMRetrospector(tiny_pixel_unet(seed=0), steps=5).config_hash()
    assert base.config_hash() != PixelDDIMRetrospector(tiny_pixel_unet(seed=0), steps=6).config_hash()
    assert base.config_hash() != PixelDDIMRetrospector(tiny_pixel_unet(seed=1), steps=5).config_hash()
    latent = LatentRetrospector(tiny_vae(), tiny_latent_unet())
    other_cond = LatentRetrospector(tiny_vae(), tiny_latent_unet(), conditioning=torch.ones(1, 4, 8))
    assert latent.config_hash() != other_cond.config_hash()


@pytest.mark.parametrize("make", [lambda **k: AutoencoderRetrospector(tiny_vae(), **k),
                                  lambda **k: LatentRetrospector(tiny_vae(), tiny_latent_unet(), **k)])  # fmt: skip
def test_bfloat16_compute_is_close_to_float32(make):
    x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = make(clamp=False).retrospect(x)
    low = make(clamp=False, dtype="bfloat16").retrospect(x)
    assert low.reconstruction.dtype == torch.float32  # the input's dtype, whatever the compute dtype
    rel = (low.reconstruction - ref.reconstruction).norm() / ref.reconstruction.norm()
    assert rel < 5e-2, rel
    assert make(dtype="bfloat16").config_hash() != make().config_hash()
