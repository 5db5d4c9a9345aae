"""Fused line enhancement: x̃ = x + β·|∇G_σ₂ ∗ sharpen(x)| as two separable stencil passes, and its
backward.

Why composed filters work: every stage before the magnitude is linear and uses half-sample
symmetric borders, and filtering a symmetric extension with an even kernel yields a symmetric
extension again. So the gradients g_x, g_y of the sharpened image equal *composed* separable
filters applied once to the symmetric extension of x (V: along H, rows; W: along W, columns)::

    g_x = W[D₂]   V[(1+a)·G₂] x + W[D₂∗G₁] V[−a·G₂∗G₁] x
    g_y = W[G₂]   V[(1+a)·D₂] x + W[G₂∗G₁] V[−a·D₂∗G₁] x

All eight 1-D filters have radius R = r₁ + r₂ (the shorter ones padded with zero taps) and are
built on the host in float64 (:func:`hrrkit.ops.line_enhance.composed_taps`), then rounded once
to float32.

Two kernels, each a plain stencil over the 2R + 1 taps (a loop: unrolling them made the compiler
hoist every tap's loads and spill), a BLOCK_H × BLOCK_W tile per program, float32 accumulation,
no ``tl.dot`` and no shared memory:

* ``_vpass``: the four vertical filters, reading the tile's rows shifted by −R..R (folded row
  indices, the tensor's own strides; neighbouring programs' reads hit L1/L2), writing four
  float32 planes P₀..P₃.
* ``_hpass``: the four horizontal filters over P (folded column indices), then the epilogue:
  ``MODE_OUT`` writes x + β(√(g_x² + g_y² + ε²) − ε); ``MODE_WEIGHTS`` writes the backward's
  w_x = β·ġ·g_x/m̂, w_y = β·ġ·g_y/m̂; ``MODE_ADJOINT`` writes ∂x = ġ − (Jᵀw).

A value reaches exactly the outputs whose (2R + 1)² stencil contains it — a NaN or inf input pixel
spreads as far as it does in the reference and no farther (zero taps still multiply it, as the
reference's convolutions do).

Backward (deterministic, no atomics): recompute g (``_vpass`` + ``_hpass`` in ``MODE_WEIGHTS``),
then ∂x = ġ + Jᵀw. The transpose of "extend symmetrically, then correlate with K" is "extend w with
K's parity, then correlate with the flipped K": w_x is extended evenly along H and oddly
(sign-flipped mirror images) along W, w_y the other way round, and every term has exactly one odd
(derivative) factor, so the flipped filters are the forward ones negated: ``_vpass`` on (w_x, w_y)
with w_y odd along H, then ``_hpass`` in ``MODE_ADJOINT`` with P₀, P₁ odd along W.

Memory per pixel (fp32 x, ideal caching): forward reads x twice and writes x̃ plus 4 planes and
reads them back (≈ 44 B); backward ≈ 96 B. See benchmarks/results/aot-*/README.md for the
predicted times.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_H = 16
BLOCK_W = 64
# CPU tensors run under the interpreter, whose cost is per program and per op, not per element:
# 64 × 64 tiles there (tiles still meet inside the tests' images of up to 67 pixels)
INTERPRETER_BLOCK_H = 64
INTERPRETER_BLOCK_W = 64
NUM_WARPS = 4
MODE_OUT = 0
MODE_WEIGHTS = 1
MODE_ADJOINT = 2


@triton.jit
def _fold(i, n):
    # half-sample symmetric extension: mirror about the outer pixel edges, any i, any n >= 1
    m = i % (2 * n)
    m = tl.where(m < 0, m + 2 * n, m)
    return tl.where(m < n, m, 2 * n - 1 - m)


@triton.jit
def _mirror_sign(i, n):
    # +1 on the direct copies of the signal, -1 on its mirror images (odd extension)
    m = i % (2 * n)
    m = tl.where(m < 0, m + 2 * n, m)
    return tl.where(m < n, 1.0, -1.0)


@triton.jit
def _tile(pid, C, H, W, tiles_w, tiles_per_plane, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    plane = pid // tiles_per_plane
    tile = pid % tiles_per_plane
    rows = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = (rows[:, None] < H) & (cols[None, :] < W)
    return plane, plane // C, plane % C, rows, cols, mask


@triton.jit
def _vtap(t, p0, p1, p2, p3, a_base, b_base, taps_ptr, rows, cols, mask, H, sah, saw, sbh, sbw,
          R, SAME_SOURCE: tl.constexpr, ODD_B: tl.constexpr):
    # tap t (offset t − R) of the four vertical filters
    NT = 2 * R + 1
    src = rows + (t - R)
    fr = _fold(src, H)
    va = tl.load(a_base + fr[:, None] * sah + cols[None, :] * saw, mask=mask, other=0.0).to(tl.float32)
    if SAME_SOURCE:
        vb = va
    else:
        vb = tl.load(b_base + fr[:, None] * sbh + cols[None, :] * sbw, mask=mask, other=0.0).to(tl.float32)
        if ODD_B:
            vb = vb * _mirror_sign(src, H)[:, None]
    p0 += tl.load(taps_ptr + t) * va
    p1 += tl.load(taps_ptr + NT + t) * va
    p2 += tl.load(taps_ptr + 2 * NT + t) * vb
    p3 += tl.load(taps_ptr + 3 * NT + t) * vb
    return p0, p1, p2, p3


@triton.jit
def _htap(s, gx, gy, p_ptr, taps_ptr, row_off, cols, mask, W, p_stride, R, ODD_A: tl.constexpr):
    # tap s (offset s − R) of the four horizontal filters
    NT = 2 * R + 1
    src = cols + (s - R)
    offs = row_off + _fold(src, W)[None, :]
    q0 = tl.load(p_ptr + offs, mask=mask, other=0.0)
    q1 = tl.load(p_ptr + p_stride + offs, mask=mask, other=0.0)
    q2 = tl.load(p_ptr + 2 * p_stride + offs, mask=mask, other=0.0)
    q3 = tl.load(p_ptr + 3 * p_stride + offs, mask=mask, other=0.0)
    ax = tl.load(taps_ptr + 4 * NT + s) * q0 + tl.load(taps_ptr + 5 * NT + s) * q1
    if ODD_A:
        ax = ax * _mirror_sign(src, W)[None, :]
    gx += ax
    gy += tl.load(taps_ptr + 6 * NT + s) * q2 + tl.load(taps_ptr + 7 * NT + s) * q3
    return gx, gy


@triton.jit
def _vpass(
    a_ptr, b_ptr, p_ptr, taps_ptr,
    C, H, W, tiles_w, tiles_per_plane, p_stride,
    sab, sac, sah, saw, sbb, sbc, sbh, sbw,
    R, SAME_SOURCE: tl.constexpr, ODD_B: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """P₀, P₁ = V[f₀], V[f₁] of source a; P₂, P₃ = V[f₂], V[f₃] of source b (b extended oddly along
    H when ODD_B); taps rows 0..3 of ``taps_ptr`` ((8, 2R + 1) float32)."""
    plane, b, c, rows, cols, mask = _tile(tl.program_id(0), C, H, W, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    a_base = a_ptr + b.to(tl.int64) * sab + c.to(tl.int64) * sac
    b_base = b_ptr + b.to(tl.int64) * sbb + c.to(tl.int64) * sbc
    p0 = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    p1 = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    p2 = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    p3 = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    # a loop, not unrolled: unrolled taps let the compiler hoist every tap's loads and spill
    # (measured: 255 registers and spills at R = 6 and 15; the loop needs about 80-110, none)
    for t in range(2 * R + 1):
        p0, p1, p2, p3 = _vtap(t, p0, p1, p2, p3, a_base, b_base, taps_ptr, rows, cols, mask, H,
                               sah, saw, sbh, sbw, R, SAME_SOURCE, ODD_B)
    offs = plane.to(tl.int64) * H * W + rows[:, None] * W + cols[None, :]
    tl.store(p_ptr + offs, p0, mask=mask)
    tl.store(p_ptr + p_stride + offs, p1, mask=mask)
    tl.store(p_ptr + 2 * p_stride + offs, p2, mask=mask)
    tl.store(p_ptr + 3 * p_stride + offs, p3, mask=mask)


@triton.jit
def _hpass(
    p_ptr, taps_ptr, x_ptr, go_ptr, o1_ptr, o2_ptr,
    C, H, W, tiles_w, tiles_per_plane, p_stride,
    sxb, sxc, sxh, sxw, sgb, sgc, sgh, sgw, sob, soc, soh, sow,
    beta, eps,
    R, MODE: tl.constexpr, ODD_A: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """g_x = W[f₄]P₀ + W[f₅]P₁, g_y = W[f₆]P₂ + W[f₇]P₃ (P₀, P₁ extended oddly along W when ODD_A),
    then the MODE epilogue (module docstring)."""
    plane, b, c, rows, cols, mask = _tile(tl.program_id(0), C, H, W, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    row_off = plane.to(tl.int64) * H * W + rows[:, None] * W
    gx = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    gy = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for s in range(2 * R + 1):
        gx, gy = _htap(s, gx, gy, p_ptr, taps_ptr, row_off, cols, mask, W, p_stride, R, ODD_A)
    bc_x = b.to(tl.int64) * sxb + c.to(tl.int64) * sxc
    bc_g = b.to(tl.int64) * sgb + c.to(tl.int64) * sgc
    bc_o = b.to(tl.int64) * sob + c.to(tl.int64) * soc
    if MODE == 0:
        xc = tl.load(x_ptr + bc_x + rows[:, None] * sxh + cols[None, :] * sxw, mask=mask, other=0.0).to(tl.float32)
        mag = tl.sqrt(gx * gx + gy * gy + eps * eps)
        out = xc + beta * (mag - eps)
        tl.store(o1_ptr + bc_o + rows[:, None] * soh + cols[None, :] * sow, out.to(o1_ptr.dtype.element_ty), mask=mask)
    elif MODE == 1:
        go = tl.load(go_ptr + bc_g + rows[:, None] * sgh + cols[None, :] * sgw, mask=mask, other=0.0).to(tl.float32)
        mag = tl.sqrt(gx * gx + gy * gy + eps * eps)
        scale = beta * go / mag
        offs = row_off + cols[None, :]
        tl.store(o1_ptr + offs, gx * scale, mask=mask)
        tl.store(o2_ptr + offs, gy * scale, mask=mask)
    else:
        go = tl.load(go_ptr + bc_g + rows[:, None] * sgh + cols[None, :] * sgw, mask=mask, other=0.0).to(tl.float32)
        dx = go - (gx + gy)  # the flipped filters are the forward ones negated
        tl.store(o1_ptr + bc_o + rows[:, None] * soh + cols[None, :] * sow, dx.to(o1_ptr.dtype.element_ty), mask=mask)


def _taps(taps64: torch.Tensor, device) -> torch.Tensor:
    return taps64.to(device=device, dtype=torch.float32).contiguous()


def max_offset(shape, strides) -> int:
    """Largest in-plane element offset (H − 1)·|s_h| + (W − 1)·|s_w| the kernels form in int32."""
    return (shape[2] - 1) * abs(strides[2]) + (shape[3] - 1) * abs(strides[3])


def _blocks(device: torch.device) -> tuple[int, int]:
    # the interpreter (CPU tensors) pays per program and per op, not per element: big tiles there
    return (BLOCK_H, BLOCK_W) if device.type != "cpu" else (INTERPRETER_BLOCK_H, INTERPRETER_BLOCK_W)


def _launch_geometry(shape, block_h=BLOCK_H, block_w=BLOCK_W):
    b, c, h, w = shape
    tiles_w = triton.cdiv(w, block_w)
    tiles_per_plane = triton.cdiv(h, block_h) * tiles_w
    # B·C planes folded into grid axis 0 (limit 2³¹ − 1; axis 1 would stop at 65,535)
    return tiles_w, tiles_per_plane, (b * c * tiles_per_plane,)


def _vertical(a, b_src, p, taps, radius, same_source, odd_b):
    bsz, c, h, w = a.shape
    bh, bw = _blocks(a.device)
    tiles_w, tiles_per_plane, grid = _launch_geometry(a.shape, bh, bw)
    _vpass[grid](
        a, b_src, p, taps, c, h, w, tiles_w, tiles_per_plane, p.stride(0), *a.stride(), *b_src.stride(),
        R=radius, SAME_SOURCE=same_source, ODD_B=odd_b, BLOCK_H=bh, BLOCK_W=bw, num_warps=NUM_WARPS,
    )


def _horizontal(p, taps, x, go, o1, o2, beta, eps, radius, mode, odd_a):
    bsz, c, h, w = x.shape
    bh, bw = _blocks(x.device)
    tiles_w, tiles_per_plane, grid = _launch_geometry(x.shape, bh, bw)
    o_strides = o1.stride() if mode != MODE_WEIGHTS else (0, 0, 0, 0)
    _hpass[grid](
        p, taps, x, go, o1, o2, c, h, w, tiles_w, tiles_per_plane, p.stride(0),
        *x.stride(), *go.stride(), *o_strides, beta, eps,
        R=radius, MODE=mode, ODD_A=odd_a, BLOCK_H=bh, BLOCK_W=bw, num_warps=NUM_WARPS,
    )


def _int32_safe(t: torch.Tensor) -> torch.Tensor:
    """``t`` if every in-plane offset fits int32, else a contiguous copy (offsets < H·W)."""
    return t if max_offset(t.shape, t.stride()) < 2**31 else t.contiguous()


class LineEnhanceFunction(torch.autograd.Function):
    """Autograd wrapper; (B, C, H, W) input of any strides; float32/float16/bfloat16.

    ``taps64`` is the (8, 2R + 1) float64 table of :func:`hrrkit.ops.line_enhance.composed_taps`.
    """

    @staticmethod
    def forward(ctx, x, taps64, beta, eps):
        radius = (taps64.shape[1] - 1) // 2
        x = _int32_safe(x)
        out = torch.empty_like(x)
        if out.stride() != x.stride():  # empty_like of an odd view is contiguous: still guard it
            out = _int32_safe(out)
        if x.numel() > 0:
            taps = _taps(taps64, x.device)
            bsz, c, h, w = x.shape
            p = torch.empty((4, bsz * c, h, w), device=x.device, dtype=torch.float32)
            _vertical(x, x, p, taps, radius, True, False)
            _horizontal(p, taps, x, x, out, out, beta, eps, radius, MODE_OUT, False)
        ctx.save_for_backward(x, taps64)
        ctx.beta, ctx.eps, ctx.radius = beta, eps, radius
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, taps64 = ctx.saved_tensors
        grad_x = torch.empty_like(x)
        if x.numel() == 0:
            return grad_x, None, None, None
        grad_out = _int32_safe(grad_out)
        grad_x = _int32_safe(grad_x)
        taps = _taps(taps64, x.device)
        bsz, c, h, w = x.shape
        p = torch.empty((4, bsz * c, h, w), device=x.device, dtype=torch.float32)
        wx = torch.empty((bsz, c, h, w), device=x.device, dtype=torch.float32)
        wy = torch.empty_like(wx)
        _vertical(x, x, p, taps, ctx.radius, True, False)
        _horizontal(p, taps, x, grad_out, wx, wy, ctx.beta, ctx.eps, ctx.radius, MODE_WEIGHTS, False)
        _vertical(wx, wy, p, taps, ctx.radius, False, True)
        _horizontal(p, taps, x, grad_out, grad_x, grad_x, 0.0, 0.0, ctx.radius, MODE_ADJOINT, True)
        return grad_x, None, None, None


def line_enhance_fused(x, taps64, beta, eps=1e-6):
    """Fused line enhancement; the contract of ``hrrkit.ops.line_enhance_reference`` with the
    filters given as the (8, 2R + 1) float64 tap table of
    :func:`hrrkit.ops.line_enhance.composed_taps` (R <= ``FUSED_MAX_HALO``)."""
    return LineEnhanceFunction.apply(x, taps64, float(beta), float(eps))


__all__ = ["LineEnhanceFunction", "line_enhance_fused", "max_offset"]
