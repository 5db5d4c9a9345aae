"""Benchmark case: correntropy-induced loss, mean reduction, forward and backward."""

from __future__ import annotations

import torch

from hrrkit.bench.registry import BenchCase, dtype_bytes, register_bench
from hrrkit.ops.correntropy import correntropy_loss


def _inputs(size, device, dtype):
    n = size["n"]
    g = torch.Generator(device="cpu").manual_seed(0)
    f = (torch.randn(n, generator=g) * 2).to(device=device, dtype=dtype).requires_grad_()
    y = (torch.randint(0, 2, (n,), generator=g) * 2 - 1).to(device=device, dtype=dtype)
    return {"logits": f, "targets": y}


def _bytes(size, dtype, mode):
    n, b = size["n"], dtype_bytes(dtype)
    fwd = 2 * n * b  # read f, y (the partial sums are negligible)
    bwd = 3 * n * b  # read f, y, write grad f
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


register_bench(
    BenchCase(
        name="correntropy",
        sizes={"tiny": {"n": 1000}, "cpu": {"n": 1 << 20}, "target": {"n": 1 << 24}},
        make_inputs=_inputs,
        reference=lambda logits, targets: correntropy_loss(logits, targets, 1.0, "mean", impl="reference"),
        fused=lambda logits, targets: correntropy_loss(logits, targets, 1.0, "mean", impl="triton"),
        grad_inputs=("logits",),
        bytes_moved=_bytes,
        flops=lambda size, mode: {"fwd": 8, "bwd": 10, "fwd+bwd": 18}[mode] * size["n"],
        dtypes=(torch.float32, torch.bfloat16),
        description="correntropy loss, mean over n scores",
    )
)
