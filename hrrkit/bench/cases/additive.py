"""Benchmark cases: AFR additive basis expansion (B-spline and RBF), forward and backward.

The ideal traffic counted by ``bytes_moved`` is h, β and g (forward) and h, grad g, β, grad h and
grad β (backward): the B·D·K basis tensor that the reference materialises is deliberately not
counted, so achieved GB/s measures the fused kernel against the no-intermediate ideal.
"""

from __future__ import annotations

import torch

from hrrkit.bench.registry import BenchCase, dtype_bytes, register_bench
from hrrkit.ops.additive import additive_expand

SIZES = {
    "tiny": {"B": 4, "D": 33, "K": 8},
    "cpu": {"B": 64, "D": 2048, "K": 16},
    "target": {"B": 256, "D": 2048, "K": 16},  # design.md §7
}


def _inputs(size, device, dtype):
    B, D, K = size["B"], size["D"], size["K"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    # normalised features, about 10 % of them outside [-1, 1] to exercise the extrapolation rule
    h = (torch.randn(B, D, generator=gen) * 0.6).to(device=device, dtype=dtype).requires_grad_()
    beta = (torch.randn(D, K, generator=gen) * 0.1).to(device=device, dtype=dtype).requires_grad_()
    return {"h": h, "beta": beta}


def _bytes(size, dtype, mode):
    B, D, K, b = size["B"], size["D"], size["K"], dtype_bytes(dtype)
    fwd = (2 * B * D + D * K) * b  # read h, β; write g
    bwd = (3 * B * D + 2 * D * K) * b  # read h, grad g, β; write grad h, grad β
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def _register(name: str, basis: str, extrapolation: str, description: str) -> None:
    register_bench(
        BenchCase(
            name=name,
            sizes=SIZES,
            make_inputs=_inputs,
            reference=lambda h, beta: additive_expand(
                h, beta, basis=basis, extrapolation=extrapolation, impl="reference"
            ),
            fused=lambda h, beta: additive_expand(h, beta, basis=basis, extrapolation=extrapolation, impl="triton"),
            grad_inputs=("h", "beta"),
            bytes_moved=_bytes,
            flops=None,
            dtypes=(torch.float32, torch.bfloat16),
            description=description,
            extra={"basis": basis, "extrapolation": extrapolation},
        )
    )


_register("additive_expand", "bspline", "clamp", "AFR expansion, cubic B-spline, clamp; h (B, D), β (D, K)")
_register("additive_expand_rbf", "rbf", "linear", "AFR expansion, Gaussian RBF, linear extrapolation")
