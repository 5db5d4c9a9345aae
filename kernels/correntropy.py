"""Fused correntropy-induced loss: one pass forward (per-block partial sums), one pass backward.

Forward reads f and y once and writes either the per-element loss or one partial sum per block
(summed afterwards in a fixed order, so results are deterministic: no atomics). Backward recomputes
the margin from f and y instead of saving intermediates.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _one_minus_exp_neg(z):
    # 1 - exp(-z) for z >= 0 without cancellation for small z (Taylor series below 0.1).
    series = z * (1.0 - z * 0.5 * (1.0 - z / 3.0 * (1.0 - z * 0.25 * (1.0 - z * 0.2 * (1.0 - z / 6.0)))))
    return tl.where(z < 0.1, series, 1.0 - tl.exp(-z))


@triton.jit
def _correntropy_fwd_kernel(
    f_ptr, y_ptr, out_ptr, n_elements, sigma_sq,
    REDUCE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    f = tl.load(f_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = 1.0 - y * f
    loss = sigma_sq * _one_minus_exp_neg(u * u / sigma_sq)
    if REDUCE:
        loss = tl.where(mask, loss, 0.0)
        tl.store(out_ptr + pid, tl.sum(loss, axis=0))
    else:
        tl.store(out_ptr + offs, loss.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _correntropy_bwd_kernel(
    f_ptr, y_ptr, grad_out_ptr, grad_f_ptr, grad_y_ptr, n_elements, sigma_sq, scale,
    REDUCE: tl.constexpr, NEED_GRAD_Y: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    f = tl.load(f_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if REDUCE:
        g = tl.load(grad_out_ptr).to(tl.float32) * scale
    else:
        g = tl.load(grad_out_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = 1.0 - y * f
    # dℓ/du = 2u·exp(-u²/σ²); du/df = -y, du/dy = -f
    dldu = g * 2.0 * u * tl.exp(-(u * u) / sigma_sq)
    tl.store(grad_f_ptr + offs, (-dldu * y).to(grad_f_ptr.dtype.element_ty), mask=mask)
    if NEED_GRAD_Y:
        tl.store(grad_y_ptr + offs, (-dldu * f).to(grad_y_ptr.dtype.element_ty), mask=mask)


class CorrentropyLossFunction(torch.autograd.Function):
    """Autograd wrapper of the fused kernels; inputs of equal shape, any layout."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, sigma: float, reduction: str):
        f = logits.contiguous().view(-1)
        y = targets.contiguous().view(-1)
        if not y.is_floating_point():
            y = y.to(torch.float32)
        n = f.numel()
        sigma_sq = float(sigma) * float(sigma)
        reduce = reduction != "none"
        grid = (max(triton.cdiv(n, _BLOCK), 1),)
        if reduce:
            partial = torch.empty(grid[0], device=f.device, dtype=torch.float32)
            _correntropy_fwd_kernel[grid](f, y, partial, n, sigma_sq, REDUCE=True, BLOCK=_BLOCK)
            out = partial.sum()
            if reduction == "mean":
                out = out / n if n > 0 else out.new_tensor(float("nan"))
            out = out.to(logits.dtype)
        else:
            out = torch.empty(n, device=f.device, dtype=logits.dtype)
            if n > 0:
                _correntropy_fwd_kernel[grid](f, y, out, n, sigma_sq, REDUCE=False, BLOCK=_BLOCK)
            out = out.view(logits.shape)
        ctx.save_for_backward(f, y)
        ctx.sigma_sq = sigma_sq
        ctx.reduction = reduction
        ctx.shape = logits.shape
        ctx.target_dtype = targets.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        f, y = ctx.saved_tensors
        n = f.numel()
        need_grad_y = ctx.needs_input_grad[1]
        grad_f = torch.empty_like(f)
        grad_y = torch.empty(n, device=f.device, dtype=ctx.target_dtype) if need_grad_y else grad_f
        reduce = ctx.reduction != "none"
        grad_out = grad_out.contiguous().view(-1) if not reduce else grad_out.reshape(1)
        scale = 1.0 / n if (ctx.reduction == "mean" and n > 0) else 1.0
        if n > 0:
            grid = (triton.cdiv(n, _BLOCK),)
            _correntropy_bwd_kernel[grid](
                f, y, grad_out, grad_f, grad_y, n, ctx.sigma_sq, scale,
                REDUCE=reduce, NEED_GRAD_Y=need_grad_y, BLOCK=_BLOCK,
            )
        grad_f = grad_f.view(ctx.shape)
        grad_y = grad_y.view(ctx.shape) if need_grad_y else None
        return grad_f, grad_y, None, None


def correntropy_loss_fused(
    logits: torch.Tensor, targets: torch.Tensor, sigma: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Fused correntropy loss; same contract as ``hrrkit.ops.correntropy_loss_reference``
    except that ``logits`` and ``targets`` must have the same shape."""
    return CorrentropyLossFunction.apply(logits, targets, sigma, reduction)
