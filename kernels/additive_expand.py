"""Fused additive basis expansion (AFR): g[m, j] = Σ_k β[j, k] φ_k(h[m, j]), forward and backward.

The B·D·K basis tensor never exists in memory:

* Forward: one program per (row block, feature block) tile reads its h tile once, evaluates the
  basis in registers and writes g. For the cubic B-spline only four basis functions are non-zero
  at a point, so the kernel finds the knot interval and gathers those four coefficients (β is
  small and stays in cache); the Gaussian RBF sums all K terms over a (rows × D-block × K)
  register tile.
* Backward: one program per (feature block, row split) pair walks its rows once, reading h and
  the incoming gradient, writes grad h for those rows and accumulates its share of grad β in a
  (D-block × K) float32 register tile. Each program writes its partial sum to its own slot and the
  slots are summed afterwards in a fixed order: no atomics, so grad β is bitwise deterministic.

All arithmetic is float32 whatever the input dtype (fp32, fp16, bf16). h and the incoming gradient
are read through their strides (a (rows, D) view; no copy when the leading dimensions can be
flattened into a view); β is made contiguous (it is only D·K numbers).

Conventions shared with the reference (:mod:`hrrkit.ops.additive`): B-spline knots
``lo + (i − 3)Δ``, ``Δ = (hi − lo)/(K − 3)``; RBF centres ``lo + k(hi − lo)/(K − 1)``; ``clamp``
extrapolation evaluates at clamp(x) and passes no gradient to h outside [lo, hi]; ``linear`` adds
the boundary tangent.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_BSPLINE = 0
_RBF = 1
# rows × D-block × K elements kept in registers by the 3-D tiles: 8192 in the forward (4 warps);
# the backward holds three such tiles at once (basis, one-hot scatter, product) and spilled at 8192
# (255 registers, 260-720 B of spills on sm_90), so it uses 4096 over 8 warps, and 2048 from
# K = 64 on (the RBF backward still spilled 16-32 B there at 4096)
_TILE_ELEMENTS = 8192
_TILE_ELEMENTS_BWD = 4096
_TILE_ELEMENTS_BWD_WIDE_K = 2048
_NUM_WARPS_BWD = 8
_BLOCK_D_3D = 32
_BLOCK_M_FWD_BSPLINE = 32
_BLOCK_D_FWD_BSPLINE = 64


@triton.jit
def _clamp_to_range(x, lo, hi):
    # comparisons are false for NaN, so NaN stays NaN (as torch.clamp does)
    return tl.where(x < lo, lo, tl.where(x > hi, hi, x))


@triton.jit
def _bspline_interval(xc, lo, inv_step, K: tl.constexpr):
    """Knot interval c in [0, K − 4] of a clamped x and the local coordinate t in [0, 1]."""
    u = (xc - lo) * inv_step
    c = u.to(tl.int32)  # u >= 0 after clamping, so truncation is floor
    c = tl.where(c > K - 4, K - 4, c)
    c = tl.where(c < 0, 0, c)  # also keeps a NaN-derived index in bounds
    t = u - c.to(tl.float32)
    return c, t


@triton.jit
def _bspline_weights(t):
    """The four non-zero uniform cubic B-spline values on an interval and their d/dt."""
    s = 1.0 - t
    t2 = t * t
    t3 = t2 * t
    w0 = s * s * s * (1.0 / 6.0)
    w1 = (3.0 * t3 - 6.0 * t2 + 4.0) * (1.0 / 6.0)
    w2 = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) * (1.0 / 6.0)
    w3 = t3 * (1.0 / 6.0)
    d0 = -0.5 * s * s
    d1 = 1.5 * t2 - 2.0 * t
    d2 = -1.5 * t2 + t + 0.5
    d3 = 0.5 * t2
    return w0, w1, w2, w3, d0, d1, d2, d3


@triton.jit
def _additive_fwd_bspline_kernel(
    h_ptr, beta_ptr, poison_ptr, g_ptr, M, D, stride_hm, stride_hd, lo, hi, inv_step,
    K: tl.constexpr, LINEAR: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (rm[:, None] < M) & (rd[None, :] < D)
    x = tl.load(h_ptr + rm[:, None] * stride_hm + rd[None, :] * stride_hd, mask=mask, other=0.0).to(tl.float32)
    xc = _clamp_to_range(x, lo, hi)
    c, t = _bspline_interval(xc, lo, inv_step, K)
    w0, w1, w2, w3, d0, d1, d2, d3 = _bspline_weights(t)
    if LINEAR:
        s = (x - xc) * inv_step  # distance past the boundary in knot units (0 inside)
        w0 += d0 * s
        w1 += d1 * s
        w2 += d2 * s
        w3 += d3 * s
    bp = beta_ptr + rd[None, :] * K + c
    b0 = tl.load(bp, mask=mask, other=0.0).to(tl.float32)
    b1 = tl.load(bp + 1, mask=mask, other=0.0).to(tl.float32)
    b2 = tl.load(bp + 2, mask=mask, other=0.0).to(tl.float32)
    b3 = tl.load(bp + 3, mask=mask, other=0.0).to(tl.float32)
    # + Σ_k 0·β[j, k]: NaN when the feature has a non-finite coefficient, as in the reference,
    # whose sum over all K terms multiplies it by a zero basis value
    poison = tl.load(poison_ptr + rd, mask=rd < D, other=0.0)
    g = b0 * w0 + b1 * w1 + b2 * w2 + b3 * w3 + poison[None, :]
    tl.store(g_ptr + rm[:, None] * D + rd[None, :], g.to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rbf_tile(x, lo, hi, spacing, neg_half_inv_w2, inv_w2, kk, LINEAR: tl.constexpr):
    """(rows, D-block, K_PAD) basis values (with the extrapolation rule) and slopes at clamp(x)."""
    xc = _clamp_to_range(x, lo, hi)
    centres = lo + kk.to(tl.float32) * spacing
    d = xc[:, :, None] - centres[None, None, :]
    phi = tl.exp(d * d * neg_half_inv_w2)
    slope = -d * inv_w2 * phi
    if LINEAR:
        phi = phi + slope * (x - xc)[:, :, None]
    return phi, slope


@triton.jit
def _additive_fwd_rbf_kernel(
    h_ptr, beta_ptr, g_ptr, M, D, stride_hm, stride_hd, lo, hi, spacing, neg_half_inv_w2, inv_w2,
    K: tl.constexpr, K_PAD: tl.constexpr, LINEAR: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    kk = tl.arange(0, K_PAD)
    mask = (rm[:, None] < M) & (rd[None, :] < D)
    x = tl.load(h_ptr + rm[:, None] * stride_hm + rd[None, :] * stride_hd, mask=mask, other=0.0).to(tl.float32)
    bmask = (rd[:, None] < D) & (kk[None, :] < K)
    beta = tl.load(beta_ptr + rd[:, None] * K + kk[None, :], mask=bmask, other=0.0).to(tl.float32)
    phi, slope = _rbf_tile(x, lo, hi, spacing, neg_half_inv_w2, inv_w2, kk, LINEAR)
    g = tl.sum(phi * beta[None, :, :], axis=2)
    tl.store(g_ptr + rm[:, None] * D + rd[None, :], g.to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _additive_bwd_kernel(
    h_ptr, go_ptr, beta_ptr, poison_ptr, grad_h_ptr, partial_ptr,
    M, D, stride_hm, stride_hd, stride_gm, stride_gd, rows_per_split,
    lo, hi, inv_step, spacing, neg_half_inv_w2, inv_w2,
    K: tl.constexpr, K_PAD: tl.constexpr, BASIS: tl.constexpr, LINEAR: tl.constexpr,
    NEED_GRAD_H: tl.constexpr, NEED_GRAD_BETA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_d = tl.program_id(0)
    split = tl.program_id(1)
    rd = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    kk = tl.arange(0, K_PAD)
    dmask = rd < D
    bmask = dmask[:, None] & (kk[None, :] < K)
    beta = tl.load(beta_ptr + rd[:, None] * K + kk[None, :], mask=bmask, other=0.0).to(tl.float32)
    poison = tl.load(poison_ptr + rd, mask=dmask, other=0.0)
    acc = tl.zeros((BLOCK_D, K_PAD), dtype=tl.float32)
    row_start = split * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, M)
    for m0 in range(row_start, row_end, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        mask = (rm[:, None] < row_end) & dmask[None, :]
        x = tl.load(h_ptr + rm[:, None] * stride_hm + rd[None, :] * stride_hd, mask=mask, other=0.0)
        x = x.to(tl.float32)
        go = tl.load(go_ptr + rm[:, None] * stride_gm + rd[None, :] * stride_gd, mask=mask, other=0.0)
        go = go.to(tl.float32)
        xc = _clamp_to_range(x, lo, hi)
        # where h receives gradient: everywhere for the tangent rule, inside [lo, hi] for clamp
        if LINEAR:
            gate = mask
        else:
            gate = mask & (x >= lo) & (x <= hi)
        if BASIS == 0:
            c, t = _bspline_interval(xc, lo, inv_step, K)
            w0, w1, w2, w3, d0, d1, d2, d3 = _bspline_weights(t)
            if NEED_GRAD_H:
                bp = beta_ptr + rd[None, :] * K + c
                b0 = tl.load(bp, mask=mask, other=0.0).to(tl.float32)
                b1 = tl.load(bp + 1, mask=mask, other=0.0).to(tl.float32)
                b2 = tl.load(bp + 2, mask=mask, other=0.0).to(tl.float32)
                b3 = tl.load(bp + 3, mask=mask, other=0.0).to(tl.float32)
                gh = go * ((b0 * d0 + b1 * d1 + b2 * d2 + b3 * d3) * inv_step + poison[None, :])
                gh = tl.where(gate, gh, 0.0)
                tl.store(
                    grad_h_ptr + rm[:, None] * D + rd[None, :], gh.to(grad_h_ptr.dtype.element_ty), mask=mask
                )
            if NEED_GRAD_BETA:
                if LINEAR:
                    s = (x - xc) * inv_step
                    w0 += d0 * s
                    w1 += d1 * s
                    w2 += d2 * s
                    w3 += d3 * s
                # scatter the four weights to their basis slots (one-hot over K in registers)
                rel = kk[None, None, :] - c[:, :, None]
                coef = tl.where(
                    rel == 0,
                    w0[:, :, None],
                    tl.where(
                        rel == 1,
                        w1[:, :, None],
                        tl.where(rel == 2, w2[:, :, None], tl.where(rel == 3, w3[:, :, None], 0.0)),
                    ),
                )
                go_m = tl.where(mask, go, 0.0)
                acc += tl.sum(go_m[:, :, None] * coef, axis=0)
        else:
            phi, slope = _rbf_tile(x, lo, hi, spacing, neg_half_inv_w2, inv_w2, kk, LINEAR)
            if NEED_GRAD_H:
                gh = go * tl.sum(slope * beta[None, :, :], axis=2)
                gh = tl.where(gate, gh, 0.0)
                tl.store(
                    grad_h_ptr + rm[:, None] * D + rd[None, :], gh.to(grad_h_ptr.dtype.element_ty), mask=mask
                )
            if NEED_GRAD_BETA:
                go_m = tl.where(mask, go, 0.0)
                acc += tl.sum(go_m[:, :, None] * phi, axis=0)
    if NEED_GRAD_BETA:
        out = partial_ptr + split * D * K + rd[:, None] * K + kk[None, :]
        tl.store(out, acc, mask=bmask)


def max_offset(t: torch.Tensor) -> int:
    """Largest element offset Σ (n_i − 1)·|s_i| of ``t`` (the kernels form row·stride in int32)."""
    return sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))


def _int32_safe(t: torch.Tensor) -> torch.Tensor:
    """``t`` if every offset the kernels form fits int32, else a contiguous copy (offsets < numel)."""
    return t if max_offset(t) < 2**31 else t.contiguous()


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _basis_constants(basis: str, num_basis: int, lo: float, hi: float, rbf_width: float | None) -> dict:
    if basis == "bspline":
        return {"inv_step": (num_basis - 3) / (hi - lo), "spacing": 0.0, "neg_half_inv_w2": 0.0, "inv_w2": 0.0}
    spacing = (hi - lo) / (num_basis - 1)
    width = spacing if rbf_width is None else float(rbf_width)
    return {
        "inv_step": 0.0,
        "spacing": spacing,
        "neg_half_inv_w2": -0.5 / (width * width),
        "inv_w2": 1.0 / (width * width),
    }


def _block_m_3d(k_pad: int, elements: int = _TILE_ELEMENTS) -> int:
    return max(1, elements // (_BLOCK_D_3D * k_pad))


def _num_row_splits(rows: int, d_blocks: int, block_m: int, device: torch.device) -> int:
    """How many row ranges the grad-β reduction is split into: enough programs to fill the GPU.

    Depends only on the shape and the device, so the summation order (and the result) is
    reproducible run to run.
    """
    if device.type == "cuda":
        target_programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target_programs = 2 * d_blocks  # the interpreter: exercise the partial-sum path cheaply
    splits = triton.cdiv(target_programs, d_blocks)
    return max(1, min(splits, triton.cdiv(rows, block_m)))


class AdditiveExpandFunction(torch.autograd.Function):
    """Autograd wrapper of the fused kernels for h viewed as (rows, D) and β of shape (D, K)."""

    @staticmethod
    def forward(ctx, h, beta, basis, lo, hi, rbf_width, extrapolation):
        D, K = beta.shape
        lead = h.shape[:-1]
        M = math.prod(lead)
        h2 = _int32_safe(h.reshape(M, D))  # a view whenever the leading dims flatten without a copy
        beta_c = beta.contiguous()
        # (D,) float32: 0, or NaN for a feature with a non-finite coefficient (see the kernel)
        poison = (beta_c.float() * 0.0).sum(-1)
        out_dtype = torch.promote_types(h.dtype, beta.dtype)
        g = torch.empty((M, D), device=h.device, dtype=out_dtype)
        consts = _basis_constants(basis, K, lo, hi, rbf_width)
        linear = extrapolation == "linear"
        if M > 0 and D > 0:
            if basis == "bspline":
                bm, bd = _BLOCK_M_FWD_BSPLINE, _BLOCK_D_FWD_BSPLINE
                grid = (triton.cdiv(M, bm), triton.cdiv(D, bd))
                _additive_fwd_bspline_kernel[grid](
                    h2, beta_c, poison, g, M, D, h2.stride(0), h2.stride(1), lo, hi, consts["inv_step"],
                    K=K, LINEAR=linear, BLOCK_M=bm, BLOCK_D=bd,
                )
            else:
                k_pad = _next_pow2(K)
                bm, bd = _block_m_3d(k_pad), _BLOCK_D_3D
                grid = (triton.cdiv(M, bm), triton.cdiv(D, bd))
                _additive_fwd_rbf_kernel[grid](
                    h2, beta_c, g, M, D, h2.stride(0), h2.stride(1), lo, hi,
                    consts["spacing"], consts["neg_half_inv_w2"], consts["inv_w2"],
                    K=K, K_PAD=k_pad, LINEAR=linear, BLOCK_M=bm, BLOCK_D=bd,
                )
        ctx.save_for_backward(h2, beta_c, poison)
        ctx.basis, ctx.lo, ctx.hi, ctx.rbf_width, ctx.linear = basis, lo, hi, rbf_width, linear
        ctx.h_shape, ctx.h_dtype, ctx.beta_dtype = h.shape, h.dtype, beta.dtype
        return g.view(*lead, D)

    @staticmethod
    def backward(ctx, grad_g):
        h2, beta, poison = ctx.saved_tensors
        need_h, need_beta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        M, D = h2.shape
        K = beta.shape[1]
        go = _int32_safe(grad_g.reshape(M, D))  # keeps stride-0 (expanded) gradients as views
        k_pad = _next_pow2(K)
        bm = _block_m_3d(k_pad, _TILE_ELEMENTS_BWD if k_pad < 64 else _TILE_ELEMENTS_BWD_WIDE_K)
        bd = _BLOCK_D_3D
        d_blocks = triton.cdiv(D, bd) if D > 0 else 0
        grad_h = torch.empty((M, D), device=h2.device, dtype=ctx.h_dtype) if need_h else None
        grad_beta = None
        if M == 0 or D == 0:
            if need_beta:
                grad_beta = torch.zeros((D, K), device=h2.device, dtype=ctx.beta_dtype)
        else:
            splits = _num_row_splits(M, d_blocks, bm, h2.device)
            rows_per_split = triton.cdiv(triton.cdiv(M, splits), bm) * bm
            splits = triton.cdiv(M, rows_per_split)
            partial = torch.empty((splits, D, K), device=h2.device, dtype=torch.float32) if need_beta else None
            consts = _basis_constants(ctx.basis, K, ctx.lo, ctx.hi, ctx.rbf_width)
            dummy = h2  # never written when the matching NEED_* flag is off
            _additive_bwd_kernel[(d_blocks, splits)](
                h2, go, beta, poison, grad_h if need_h else dummy, partial if need_beta else dummy,
                M, D, h2.stride(0), h2.stride(1), go.stride(0), go.stride(1), rows_per_split,
                ctx.lo, ctx.hi, consts["inv_step"], consts["spacing"], consts["neg_half_inv_w2"], consts["inv_w2"],
                K=K, K_PAD=k_pad, BASIS=_BSPLINE if ctx.basis == "bspline" else _RBF, LINEAR=ctx.linear,
                NEED_GRAD_H=need_h, NEED_GRAD_BETA=need_beta, BLOCK_M=bm, BLOCK_D=bd, num_warps=_NUM_WARPS_BWD,
            )
            if need_beta:
                grad_beta = partial.sum(0).to(ctx.beta_dtype)  # fixed order: deterministic
        if grad_h is not None:
            grad_h = grad_h.view(ctx.h_shape)
        return grad_h, grad_beta, None, None, None, None, None


def additive_expand_fused(
    h: torch.Tensor,
    beta: torch.Tensor,
    *,
    basis: str = "bspline",
    lo: float = -1.0,
    hi: float = 1.0,
    rbf_width: float | None = None,
    extrapolation: str = "clamp",
) -> torch.Tensor:
    """Fused additive expansion; same contract as ``hrrkit.ops.additive_expand_reference``
    (arguments are validated by ``hrrkit.ops.additive_expand``)."""
    return AdditiveExpandFunction.apply(h, beta, basis, float(lo), float(hi), rbf_width, extrapolation)
