"""Retrospection cost: seconds per image, NFE and FLOPs of each retrospector at 64, 256 and 512 px.

Unlike the fused-op cases of this package (:class:`~hrrkit.bench.registry.BenchCase`: reference vs
compiled vs Triton, forward and backward), a retrospector has no gradient and no fused variant: what
matters is how its cost per image grows with the image size, and what a cache hit costs instead.
So this case is a function, not a registration:

    from hrrkit.bench.cases.retrospect import time_retrospectors, format_cost_table
    rows = time_retrospectors()                  # the shipped model (3 settings), blur, identity
    print(format_cost_table(rows))

or ``hrrkit retrospect bench --cost`` (``--out rows.jsonl``). Every row has the measured seconds per
image (minimum over ``repeats`` calls of one image after a warm-up: the minimum is the least
disturbed by other processes on a shared machine), the NFE counted by a forward hook on the UNet,
the FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode` (deterministic, so the growth
with size can be read even where timings are noisy), and the seconds a verified cache hit of the
same image costs (:meth:`~hrrkit.retrospect.cache.ReconstructionCache.load`: read + checksum).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

SIZES = (64, 256, 512)


@dataclass(frozen=True)
class CostRow:
    """One retrospector at one size (one image, float32, CPU unless a device is given)."""

    retrospector: str
    size: int
    nfe: int
    gflop: float
    seconds_per_image: float
    cache_hit_seconds: float
    threads: int
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_retrospectors() -> dict[str, Callable[[], Any]]:
    """Factories of the retrospectors to time: the shipped model in its default 2-NFE DDIM round trip,
    in a 4-NFE one and in one-step mode, the blur ablation and the identity."""
    from hrrkit.retrospect.shipped import shipped_retrospector
    from hrrkit.retrospect.simple import BlurRetrospector, IdentityRetrospector

    return {
        "real-photo-unet DDIM to t=24 (NFE 2)": lambda: shipped_retrospector(),
        "real-photo-unet full DDIM, 4 steps (NFE 8)": lambda: shipped_retrospector(steps=4, strength=1.0),
        "real-photo-unet one_step t=100 (NFE 1)": lambda: shipped_retrospector(mode="one_step", timestep=100),
        "blur sigma=1": lambda: BlurRetrospector(1.0),
        "identity": lambda: IdentityRetrospector(),
    }


def _count_nfe(retro: Any, images: torch.Tensor) -> int:
    unet = getattr(retro, "unet", None)
    if unet is None:
        retro(images)
        return 0
    calls = [0]
    handle = getattr(unet, "_orig_mod", unet).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        retro(images)
    finally:
        handle.remove()
    return calls[0]


def _cache_hit_seconds(reconstruction: torch.Tensor, images: torch.Tensor, repeats: int) -> float:
    from hrrkit.retrospect.cache import ReconstructionCache

    with tempfile.TemporaryDirectory(prefix="hrrkit-bench-cache-") as root:
        cache = ReconstructionCache(root, {"bench": "retrospect-cost"})
        key = "ab" * 32
        cache.put(key, {"reconstruction": reconstruction[0], "residual": (images - reconstruction).abs()[0]})
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cache.load(key)
            times.append(time.perf_counter() - start)
    return min(times)


def time_retrospectors(
    retrospectors: dict[str, Callable[[], Any]] | None = None,
    sizes: Sequence[int] = SIZES,
    repeats: int = 3,
    device: torch.device | str = "cpu",
) -> list[CostRow]:
    """Time every retrospector on one ``size × size`` image per size (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(device)
    rows = []
    for name, factory in (retrospectors or default_retrospectors()).items():
        retro = factory()
        if hasattr(retro, "to"):
            retro = retro.to(device)
        for size in sizes:
            gen = torch.Generator().manual_seed(size)
            images = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device)
            nfe = _count_nfe(retro, images)  # also the warm-up
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                reconstruction = retro(images)
            times = []
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                retro(images)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
            rows.append(CostRow(
                retrospector=name, size=size, nfe=nfe, gflop=counter.get_total_flops() / 1e9,
                seconds_per_image=min(times),
                cache_hit_seconds=_cache_hit_seconds(reconstruction.cpu(), images.cpu(), repeats),
                threads=torch.get_num_threads(), device=str(device),
            ))
    return rows


def format_cost_table(rows: Sequence[CostRow]) -> str:
    """Markdown: s/image, NFE, GFLOP, growth of the time from the smallest size, cache-hit cost."""
    first: dict[str, CostRow] = {}
    for row in rows:
        first.setdefault(row.retrospector, row)
    lines = [
        "| retrospector | size | NFE | GFLOP | s/image | × time vs smallest (× pixels) | cache hit s | hit / compute |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = first[r.retrospector]
        growth = r.seconds_per_image / base.seconds_per_image if base.seconds_per_image else float("nan")
        pixels = (r.size / base.size) ** 2
        ratio = r.cache_hit_seconds / r.seconds_per_image if r.seconds_per_image else float("nan")
        lines.append(
            f"| {r.retrospector} | {r.size} | {r.nfe} | {r.gflop:.3f} | {r.seconds_per_image:.4f} | "
            f"{growth:.1f} ({pixels:.0f}) | {r.cache_hit_seconds:.5f} | {ratio:.3f} |"
        )
    return "\n".join(lines)
