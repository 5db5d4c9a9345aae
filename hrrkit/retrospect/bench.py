"""Retrospection benchmark: NFE per image and images per second, per retrospector and size.

Every row is measured on the *same* tiny randomly initialised diffusers classes
(:mod:`hrrkit.retrospect.tiny`) unless real retrospectors are passed in, so the rows compare the
*settings* (how many network evaluations each needs), not the weights. NFE is counted with
forward hooks on the UNet, not taken from :meth:`Retrospector.cost`, and the two are checked to
agree. Throughput is the median of ``repeats`` timed calls after one warm-up call (CUDA is
synchronised around each call).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hrrkit.retrospect.autoencoder import AutoencoderRetrospector
from hrrkit.retrospect.base import Retrospector, dtype_name, nfe_per_image
from hrrkit.retrospect.latent import LatentRetrospector
from hrrkit.retrospect.pixel_ddim import PixelDDIMRetrospector
from hrrkit.retrospect.tiny import tiny_latent_unet, tiny_pixel_unet, tiny_vae
from hrrkit.utils.device import resolve_device

DIRE_NFE = 40  # DIRE: 20 DDIM inversion + 20 DDIM sampling steps


@dataclass(frozen=True)
class BenchRow:
    name: str
    height: int
    width: int
    batch: int
    nfe: int
    nfe_reported: int
    vae_passes: int
    images_per_s: float
    device: str
    dtype: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def tiny_retrospectors(dtype: torch.dtype | str = torch.float32) -> dict[str, Callable[[], Retrospector]]:
    """Factories for the standard settings on tiny models (built lazily, one at a time)."""
    return {
        "pixel_ddim dire(20+20)": lambda: PixelDDIMRetrospector(tiny_pixel_unet(), steps=20, dtype=dtype),
        "latent one_step(t=200)": lambda: LatentRetrospector(tiny_vae(), tiny_latent_unet(), dtype=dtype),
        "latent invert(10+10)": lambda: LatentRetrospector(
            tiny_vae(), tiny_latent_unet(), mode="invert", steps=10, dtype=dtype
        ),
        "autoencoder": lambda: AutoencoderRetrospector(tiny_vae(), dtype=dtype),
    }


def count_unet_calls(retrospector: Retrospector, images: torch.Tensor) -> tuple[int, int]:
    """``(UNet forward calls counted by a hook, NFE the retrospector reported)`` for one call."""
    unet = getattr(retrospector, "unet", None)
    calls = [0]
    handle = None
    if unet is not None:
        target = getattr(unet, "_orig_mod", unet)  # a torch.compile wrapper keeps the module here
        handle = target.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        out = retrospector.retrospect(images)
    finally:
        if handle is not None:
            handle.remove()
    return calls[0], out.nfe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(
    retrospectors: dict[str, Callable[[], Retrospector]] | None = None,
    sizes: Sequence[tuple[int, int]] = ((32, 32), (48, 40)),
    batch: int = 2,
    repeats: int = 3,
    device: torch.device | str | None = None,
) -> list[BenchRow]:
    """Measure every retrospector at every size; see the module docstring."""
    device = resolve_device(device, where="retrospector benchmark")
    rows: list[BenchRow] = []
    for name, factory in (retrospectors or tiny_retrospectors()).items():
        retro = factory().to(device)
        for h, w in sizes:
            gen = torch.Generator(device="cpu").manual_seed(0)
            images = (torch.rand(batch, 3, h, w, generator=gen) * 2 - 1).to(device)
            calls, reported = count_unet_calls(retro, images)  # also the warm-up
            cost = retro.cost((h, w))
            measured_nfe = nfe_per_image(calls, batch, cost.tiles, retro.plan((h, w))[1])
            if measured_nfe != cost.nfe or reported != cost.nfe:
                raise AssertionError(
                    f"{name}: NFE mismatch at {h}x{w}: hook counted {measured_nfe}, reported {reported}, "
                    f"cost() says {cost.nfe}"
                )
            times = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                retro.retrospect(images)
                _sync(device)
                times.append(time.perf_counter() - start)
            rows.append(
                BenchRow(
                    name=name,
                    height=h,
                    width=w,
                    batch=batch,
                    nfe=measured_nfe,
                    nfe_reported=reported,
                    vae_passes=(cost.vae_encodes + cost.vae_decodes) * cost.tiles,
                    images_per_s=batch / statistics.median(times),
                    device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    dtype=dtype_name(retro.dtype),
                )
            )
        del retro
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of the rows, with the NFE ratio against DIRE's 40."""
    lines = [
        "| retrospector | size | batch | NFE/img | × fewer than DIRE | VAE passes/img | img/s | device | dtype |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{DIRE_NFE / r.nfe:.0f}×" if r.nfe else "∞ (no UNet)"
        lines.append(
            f"| {r.name} | {r.height}×{r.width} | {r.batch} | {r.nfe} | {ratio} | {r.vae_passes} | "
            f"{r.images_per_s:.1f} | {r.device} | {r.dtype} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(benchmark()))
