"""Relative-error comparison with a per-dtype tolerance table (design.md §6)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import torch


@dataclass(frozen=True)
class Tolerance:
    """``rel``: bound on ‖out − ref‖₂ / ‖ref‖₂ (whole-tensor relative error);
    ``atol``/``rtol``: element-wise bound |out − ref| ≤ atol + rtol·|ref|."""

    rel: float
    atol: float
    rtol: float


# Inputs of this dtype, compared against a reference computed in float64 or float32.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(rel=1e-10, atol=1e-10, rtol=1e-8),
    torch.float32: Tolerance(rel=1e-5, atol=1e-5, rtol=1e-4),
    torch.float16: Tolerance(rel=5e-3, atol=5e-3, rtol=1e-2),
    torch.bfloat16: Tolerance(rel=1e-2, atol=2e-2, rtol=4e-2),
}


def tolerance_for(dtype: torch.dtype, scale: float = 1.0) -> Tolerance:
    """The tolerance for ``dtype``, loosened by ``scale`` (e.g. for long reductions)."""
    base = TOLERANCES[dtype]
    return Tolerance(rel=base.rel * scale, atol=base.atol * scale, rtol=base.rtol * scale)


def poison_like(t: torch.Tensor) -> torch.Tensor:
    """A tensor like ``t`` filled with NaN (or the dtype's max for integers)."""
    if t.is_floating_point():
        return torch.full_like(t, float("nan"))
    return torch.full_like(t, torch.iinfo(t.dtype).max)


@contextlib.contextmanager
def poisoned_allocations(module: ModuleType) -> Iterator[None]:
    """While the block runs, every ``torch.empty`` / ``torch.empty_like`` made by ``module`` (a
    kernel module: its outputs and scratch buffers) returns :func:`poison_like` memory, so an
    element a kernel forgets to write shows up as NaN (or the integer maximum) in the result.

    Example::

        with poisoned_allocations(hrrkit.kernels.correntropy):
            out = correntropy_loss(f, y, impl="triton")
        assert torch.isfinite(out).all()
    """

    class _PoisoningTorch:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def empty(*args, **kwargs):
            return poison_like(torch.empty(*args, **kwargs))

        @staticmethod
        def empty_like(*args, **kwargs):
            return poison_like(torch.empty_like(*args, **kwargs))

    if getattr(module, "torch", None) is not torch:
        raise TypeError(f"poisoned_allocations: {module.__name__} does not use `import torch`")
    module.torch = _PoisoningTorch()
    try:
        yield
    finally:
        module.torch = torch


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype | None = None,
    *,
    tol: Tolerance | None = None,
    name: str = "output",
    elementwise: bool = True,
) -> None:
    """Assert ``actual`` matches ``expected`` within the tolerance of ``dtype``.

    Both are compared in float64. The check passes when the whole-tensor relative error
    ‖a − e‖/‖e‖ is within ``tol.rel`` and (if ``elementwise``) every element satisfies
    |a − e| ≤ atol + rtol·|e|. Non-finite values pass only where both tensors hold the same
    non-finite value; a NaN in ``actual`` where ``expected`` is finite always fails.

    Raises:
        AssertionError: with the shapes, the relative error, the worst element's index and
            values, and how many elements are out of tolerance.
    """
    if tol is None:
        tol = tolerance_for(dtype or expected.dtype)
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    a_fin, e_fin = torch.isfinite(a), torch.isfinite(e)
    bad_nonfinite = (a_fin != e_fin) | (~a_fin & ~e_fin & ~((a == e) | (a.isnan() & e.isnan())))
    if bad_nonfinite.any():
        idx = tuple(int(i) for i in bad_nonfinite.nonzero()[0])
        raise AssertionError(
            f"{name}: {int(bad_nonfinite.sum())} non-finite mismatches; first at {idx}: "
            f"actual={a[idx].item()} expected={e[idx].item()}"
        )
    both = a_fin & e_fin
    a, e = torch.where(both, a, 0.0), torch.where(both, e, 0.0)
    diff = (a - e).abs()
    ref_norm = e.norm().item()
    rel = diff.norm().item() / ref_norm if ref_norm > 0 else diff.norm().item()
    over = diff > (tol.atol + tol.rtol * e.abs()) if elementwise else torch.zeros_like(diff, dtype=torch.bool)
    if rel > tol.rel or over.any():
        worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.numel() else ()
        raise AssertionError(
            f"{name}: relative error {rel:.3e} (allowed {tol.rel:.1e}); "
            f"{int(over.sum())}/{diff.numel()} elements beyond atol={tol.atol:.1e}, rtol={tol.rtol:.1e}; "
            f"worst at {worst}: actual={a[worst].item() if diff.numel() else None!r} "
            f"expected={e[worst].item() if diff.numel() else None!r} |diff|={diff.max().item() if diff.numel() else 0:.3e}; "
            f"shape {tuple(actual.shape)}"
        )
