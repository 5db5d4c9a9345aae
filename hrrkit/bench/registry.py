"""Benchmark registry: each fused op declares its sizes, reference, fused version and costs.

A :class:`BenchCase` is data, not a script, so ``hrrkit bench`` can time every op the same way
(reference eager, ``torch.compile(reference)``, fused; forward, backward, both) and so the harness
is tested on tiny sizes on CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

Inputs = dict[str, Any]
Size = Mapping[str, int]


@dataclass(frozen=True)
class BenchCase:
    """One benchmarked op.

    Attributes:
        name: the op name (``hrrkit bench --op NAME``), usually the dispatcher's op name.
        sizes: named size dicts, e.g. ``{"tiny": {...}, "cpu": {...}, "target": {...}}``. ``tiny``
            is what the harness's own tests run; ``target`` is the size of design.md §7.
        make_inputs: ``(size, device, dtype) -> kwargs`` of tensors (leaf tensors that need grads
            must have ``requires_grad=True``; see ``grad_inputs``).
        reference: ``(**inputs) -> Tensor | tuple[Tensor, ...]``, the reference path.
        fused: same contract for the fused path, or ``None`` when there is none.
        grad_inputs: names of the inputs whose gradients the backward pass computes.
        bytes_moved: ``(size, dtype, mode) -> int``: the bytes an ideal implementation must read
            and write for ``mode`` in ``{"fwd", "bwd", "fwd+bwd"}`` (used for achieved GB/s).
        flops: ``(size, mode) -> int`` floating-point operations, or ``None``.
        dtypes: dtypes the case supports.
        description: one line for the tables.
    """

    name: str
    sizes: Mapping[str, Size]
    make_inputs: Callable[[Size, torch.device, torch.dtype], Inputs]
    reference: Callable[..., Any]
    fused: Callable[..., Any] | None
    grad_inputs: tuple[str, ...]
    bytes_moved: Callable[[Size, torch.dtype, str], int]
    flops: Callable[[Size, str], int] | None = None
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


_CASES: dict[str, BenchCase] = {}


def register_bench(case: BenchCase) -> BenchCase:
    _CASES[case.name] = case
    return case


def bench_cases() -> dict[str, BenchCase]:
    """All registered cases (importing :mod:`hrrkit.bench.cases` registers the built-in ones)."""
    import hrrkit.bench.cases  # noqa: F401  (registers)

    return dict(_CASES)


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
