"""Hypothesis strategies for kernel tests: odd shapes, layouts, parameter ranges.

Sizes deliberately include 1 and values that are not multiples of any block size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

LAYOUTS = ("contiguous", "noncontiguous", "channels_last")


def odd_sizes(min_value: int = 1, max_value: int = 67) -> st.SearchStrategy[int]:
    """Integers in [min, max] biased towards the awkward ones: 1, primes, block ± 1."""
    special = [v for v in (1, 2, 3, 5, 7, 13, 15, 17, 31, 33, 63, 65, 67) if min_value <= v <= max_value]
    return st.one_of(st.sampled_from(special), st.integers(min_value, max_value)) if special else st.integers(
        min_value, max_value
    )


def shapes(rank: int, min_side: int = 1, max_side: int = 67) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*[odd_sizes(min_side, max_side) for _ in range(rank)])


def layouts(rank: int) -> st.SearchStrategy[str]:
    return st.sampled_from(LAYOUTS if rank == 4 else LAYOUTS[:2])


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**31 - 1)


def make_tensor(
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    layout: str = "contiguous",
    seed: int = 0,
    low: float = -3.0,
    high: float = 3.0,
    requires_grad: bool = False,
) -> torch.Tensor:
    """A reproducible uniform tensor of ``shape`` in ``[low, high)`` with the given memory layout.

    ``noncontiguous`` gives a strided view (every other element of a doubled last dimension);
    ``channels_last`` applies to rank-4 tensors.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    t = torch.rand(shape, generator=gen, dtype=torch.float64)
    t = (t * (high - low) + low).to(device=device, dtype=dtype)
    if layout == "noncontiguous" and shape:
        full = torch.zeros(*shape[:-1], shape[-1] * 2, dtype=dtype, device=device)
        full[..., ::2] = t
        t = full[..., ::2]
    elif layout == "channels_last" and len(shape) == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)
