"""Test utilities for fused-vs-reference checks, usable by users who add their own ops.

* :data:`TOLERANCES` — the per-dtype tolerance table.
* :func:`assert_close` — relative-error comparison that reports where and by how much outputs
  differ; NaN or Inf never passes unless present at the same places in both.
* :func:`poison_like` — a buffer full of NaN; :func:`poisoned_allocations` makes a kernel module's
  outputs and scratch buffers start poisoned, to prove its kernels write every element they return.
* :mod:`hrrkit.testing.strategies` — hypothesis strategies for odd shapes and layouts (needs the
  ``dev`` extra).
"""

from hrrkit.testing.compare import (
    TOLERANCES,
    Tolerance,
    assert_close,
    poison_like,
    poisoned_allocations,
    tolerance_for,
)

__all__ = ["TOLERANCES", "Tolerance", "assert_close", "poison_like", "poisoned_allocations", "tolerance_for"]
