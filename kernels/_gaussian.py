"""Sampled Gaussian and Gaussian-derivative taps shared by the line-enhancement reference op and
its fused kernel (pure Python: importing this module does not import Triton)."""

from __future__ import annotations

import math
from functools import lru_cache


def kernel_radius(sigma: float, truncate: float) -> int:
    """Radius (in pixels) of a Gaussian of ``sigma`` truncated at ``truncate`` standard deviations:
    ``max(1, int(truncate·σ + 0.5))`` (scipy.ndimage's rule, but never 0)."""
    return max(1, int(truncate * sigma + 0.5))


@lru_cache(maxsize=64)
def gaussian_taps(sigma: float, truncate: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(G, D)`` for offsets ``t = −r..r``: ``G[t] = e^{−t²/2σ²} / Σ e^{−u²/2σ²}`` (sums to 1) and
    ``D[t] = t·e^{−t²/2σ²} / Σ u²·e^{−u²/2σ²}`` (unit response to a unit ramp)."""
    r = kernel_radius(sigma, truncate)
    w = [math.exp(-(t * t) / (2.0 * sigma * sigma)) for t in range(-r, r + 1)]
    total = math.fsum(w)
    second = math.fsum(t * t * w[t + r] for t in range(-r, r + 1))
    return tuple(v / total for v in w), tuple(t * w[t + r] / second for t in range(-r, r + 1))
