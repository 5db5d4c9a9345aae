"""Benchmark cases of the MSR ops: line enhancement, multi-level moments, residual moments.

``bytes_moved`` counts what an ideal implementation must read and write (each image element once
per pass): the fused line enhancement in fact also writes and reads four float32 planes between its
vertical and horizontal passes (twice in the backward), so its achieved GB/s understates the traffic
it really causes (``hrrkit.bench.aot.predictions`` counts it).
The moments' per-cell outputs (B·C·K values) are included; they are small next to the maps.
"""

from __future__ import annotations

import torch

from hrrkit.bench.registry import BenchCase, dtype_bytes, register_bench
from hrrkit.ops.line_enhance import line_enhance
from hrrkit.ops.moments import multilevel_moments, num_cells, residual_multilevel_moments

LEVELS = (1, 2, 4)
LINE_ARGS = dict(sigma_sharpen=1.0, amount=1.0, sigma_edge=1.0, beta=0.5)


def _image(size, device, dtype, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (size["b"], size["c"], size["h"], size["w"])
    return torch.rand(shape, generator=g).to(device=device, dtype=dtype).requires_grad_()


def _numel(size):
    return size["b"] * size["c"] * size["h"] * size["w"]


def _line_bytes(size, dtype, mode):
    plane = _numel(size) * dtype_bytes(dtype)
    fwd = 2 * plane  # read x, write x̃
    bwd = 3 * plane  # read x and ∂x̃, write ∂x
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def _line_flops(size, mode):
    # as the reference computes them: blur (2 passes) + 4 gradient passes, 7 taps each at σ = 1,
    # 2 flops per tap, plus ~10 pointwise flops per pixel
    fwd = (6 * 7 * 2 + 10) * _numel(size)
    return {"fwd": fwd, "bwd": 2 * fwd, "fwd+bwd": 3 * fwd}[mode]


register_bench(
    BenchCase(
        name="line_enhance",
        sizes={
            "tiny": {"b": 1, "c": 3, "h": 17, "w": 19},
            "cpu": {"b": 2, "c": 3, "h": 256, "w": 256},
            "target": {"b": 32, "c": 3, "h": 512, "w": 512},
        },
        make_inputs=lambda size, device, dtype: {"x": _image(size, device, dtype, 0)},
        reference=lambda x: line_enhance(x, **LINE_ARGS, impl="reference"),
        fused=lambda x: line_enhance(x, **LINE_ARGS, impl="triton"),
        grad_inputs=("x",),
        bytes_moved=_line_bytes,
        flops=_line_flops,
        dtypes=(torch.float32, torch.bfloat16),
        description="unsharp mask σ₁=1, a=1 → Gaussian-derivative magnitude σ₂=1 → x + 0.5·edges",
    )
)


def _moment_bytes(num_inputs):
    def bytes_moved(size, dtype, mode):
        maps = num_inputs * _numel(size) * dtype_bytes(dtype)
        stats = 2 * size["b"] * size["c"] * num_cells(LEVELS) * 4  # (mean, var) float32
        fwd = maps + stats  # read the map(s), write the statistics
        bwd = 2 * maps + stats  # read the map(s) and the statistics' grads, write the grads
        return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]

    return bytes_moved


MOMENT_SIZES = {
    "tiny": {"b": 2, "c": 5, "h": 9, "w": 11},
    "cpu": {"b": 8, "c": 64, "h": 56, "w": 56},
    "target": {"b": 64, "c": 256, "h": 56, "w": 56},
}

register_bench(
    BenchCase(
        name="multilevel_moments",
        sizes=MOMENT_SIZES,
        make_inputs=lambda size, device, dtype: {"x": _image(size, device, dtype, 1)},
        reference=lambda x: multilevel_moments(x, LEVELS, impl="reference"),
        fused=lambda x: multilevel_moments(x, LEVELS, impl="triton"),
        grad_inputs=("x",),
        bytes_moved=_moment_bytes(1),
        dtypes=(torch.float32, torch.bfloat16),
        description="per-channel mean/variance over 1×1, 2×2, 4×4 grid cells",
    )
)

register_bench(
    BenchCase(
        name="residual_moments",
        sizes=MOMENT_SIZES,
        make_inputs=lambda size, device, dtype: {
            "a": _image(size, device, dtype, 2),
            "b": _image(size, device, dtype, 3),
        },
        reference=lambda a, b: residual_multilevel_moments(a, b, LEVELS, impl="reference"),
        fused=lambda a, b: residual_multilevel_moments(a, b, LEVELS, impl="triton"),
        grad_inputs=("a", "b"),
        bytes_moved=_moment_bytes(2),
        dtypes=(torch.float32, torch.bfloat16),
        description="multi-level moments of |a − b| (the residual is never materialised by the fused path)",
    )
)
