"""Fused line enhancement: x̃ = x + β·|∇G_σ₂ ∗ sharpen(x)| in one tiled pass, and its backward.

Why one pass works: every stage before the magnitude is linear and uses half-sample symmetric
borders, and filtering a symmetric extension with an even kernel yields a symmetric extension
again. So the gradients g_x, g_y of the sharpened image equal *composed* separable filters applied
once to the symmetric extension of x::

    g_x = (1+a)·V[G₂] X H[D₂] − a·V[G₂∗G₁] X H[D₂∗G₁]
    g_y = (1+a)·V[D₂] X H[G₂] − a·V[D₂∗G₁] X H[G₂∗G₁]

Each program owns a TILE × TILE output tile of one (b, c) plane. It loads the input block
``X`` (BLOCK × BLOCK, BLOCK = next power of two >= TILE + 2R with halo R = r₁ + r₂) once, with
folded (mirrored) indices and the tensor's own strides, and applies each separable filter as two
small matrix products with banded matrices ``V`` (TILE × BLOCK) and ``H`` (BLOCK × TILE) built
on the host (``tl.dot`` in IEEE fp32, so results match the float32 reference to rounding).

Backward (two passes, no atomics, deterministic):
  1. recompute g_x, g_y per tile and write w_x = β·ġ·g_x/m̂, w_y = β·ġ·g_y/m̂ (float32 scratch),
     with m̂ = sqrt(g_x² + g_y² + ε²);
  2. ∂x = ġ + Jᵀ w. The transpose of "extend symmetrically, then correlate with K" is "extend
     w with K's parity, then correlate with the flipped K": w_x is extended evenly along H and
     oddly (sign-flipped mirror images) along W, w_y the other way round, and the flipped kernels
     are the same banded matrices negated (derivative kernels are odd, Gaussians even).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl
from hrrkit.kernels._gaussian import gaussian_taps, kernel_radius

TILE = 32


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
def _load_mats(v_ptr, h_ptr, k: tl.constexpr, TILE: tl.constexpr, BLOCK: tl.constexpr):
    t = tl.arange(0, TILE)
    blk = tl.arange(0, BLOCK)
    v = tl.load(v_ptr + k * TILE * BLOCK + t[:, None] * BLOCK + blk[None, :])
    h = tl.load(h_ptr + k * BLOCK * TILE + blk[:, None] * TILE + t[None, :])
    return v, h


@triton.jit
def _filter_pair(X, v_ptr, h_ptr, k0: tl.constexpr, TILE: tl.constexpr, BLOCK: tl.constexpr):
    # V[k0] X H[k0] + V[k0+1] X H[k0+1]: two composed separable filters on one loaded block
    v0, h0 = _load_mats(v_ptr, h_ptr, k0, TILE, BLOCK)
    v1, h1 = _load_mats(v_ptr, h_ptr, k0 + 1, TILE, BLOCK)
    out = tl.dot(v0, tl.dot(X, h0, input_precision="ieee"), input_precision="ieee")
    out += tl.dot(v1, tl.dot(X, h1, input_precision="ieee"), input_precision="ieee")
    return out


@triton.jit
def _line_enhance_fwd_kernel(
    x_ptr,
    go_ptr,
    out_ptr,
    wx_ptr,
    wy_ptr,
    v_ptr,
    h_ptr,
    C,
    H,
    W,
    tiles_w,
    sxb,
    sxc,
    sxh,
    sxw,
    sgb,
    sgc,
    sgh,
    sgw,
    sob,
    soc,
    soh,
    sow,
    beta,
    eps,
    HALO,
    BACKWARD: tl.constexpr,
    TILE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid_tile = tl.program_id(0)
    plane = tl.program_id(1)
    b = plane // C
    c = plane % C
    row0 = (pid_tile // tiles_w) * TILE
    col0 = (pid_tile % tiles_w) * TILE
    blk = tl.arange(0, BLOCK)
    rows = _fold(row0 - HALO + blk, H)
    cols = _fold(col0 - HALO + blk, W)
    x_base = x_ptr + b.to(tl.int64) * sxb + c.to(tl.int64) * sxc
    # the whole halo block, read once; every index is valid after folding, so no mask
    X = tl.load(x_base + rows[:, None] * sxh + cols[None, :] * sxw).to(tl.float32)
    gx = _filter_pair(X, v_ptr, h_ptr, 0, TILE, BLOCK)
    gy = _filter_pair(X, v_ptr, h_ptr, 2, TILE, BLOCK)
    mag = tl.sqrt(gx * gx + gy * gy + eps * eps)

    t = tl.arange(0, TILE)
    orow = row0 + t
    ocol = col0 + t
    mask = (orow[:, None] < H) & (ocol[None, :] < W)
    if BACKWARD:
        go = tl.load(
            go_ptr + b.to(tl.int64) * sgb + c.to(tl.int64) * sgc + orow[:, None] * sgh + ocol[None, :] * sgw,
            mask=mask,
            other=0.0,
        ).to(tl.float32)
        scale = beta * go / mag
        offs = plane.to(tl.int64) * H * W + orow[:, None] * W + ocol[None, :]
        tl.store(wx_ptr + offs, gx * scale, mask=mask)
        tl.store(wy_ptr + offs, gy * scale, mask=mask)
    else:
        xc = tl.load(x_base + orow[:, None] * sxh + ocol[None, :] * sxw, mask=mask, other=0.0).to(tl.float32)
        out = xc + beta * (mag - eps)
        o_base = out_ptr + b.to(tl.int64) * sob + c.to(tl.int64) * soc
        tl.store(o_base + orow[:, None] * soh + ocol[None, :] * sow, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _line_enhance_bwd_kernel(
    wx_ptr,
    wy_ptr,
    go_ptr,
    gx_ptr,
    v_ptr,
    h_ptr,
    C,
    H,
    W,
    tiles_w,
    sgb,
    sgc,
    sgh,
    sgw,
    sdb,
    sdc,
    sdh,
    sdw,
    HALO,
    TILE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid_tile = tl.program_id(0)
    plane = tl.program_id(1)
    b = plane // C
    c = plane % C
    row0 = (pid_tile // tiles_w) * TILE
    col0 = (pid_tile % tiles_w) * TILE
    blk = tl.arange(0, BLOCK)
    rr = row0 - HALO + blk
    cc = col0 - HALO + blk
    rows = _fold(rr, H)
    cols = _fold(cc, W)
    offs = plane.to(tl.int64) * H * W + rows[:, None] * W + cols[None, :]
    # w_x: even along H, odd along W (the x-filters are odd along W); w_y the other way round
    Wx = tl.load(wx_ptr + offs) * _mirror_sign(cc, W)[None, :]
    Wy = tl.load(wy_ptr + offs) * _mirror_sign(rr, H)[:, None]
    # flipped filters = the same banded matrices negated (one odd factor in every term)
    adj = -_filter_pair(Wx, v_ptr, h_ptr, 0, TILE, BLOCK) - _filter_pair(Wy, v_ptr, h_ptr, 2, TILE, BLOCK)

    t = tl.arange(0, TILE)
    orow = row0 + t
    ocol = col0 + t
    mask = (orow[:, None] < H) & (ocol[None, :] < W)
    go = tl.load(
        go_ptr + b.to(tl.int64) * sgb + c.to(tl.int64) * sgc + orow[:, None] * sgh + ocol[None, :] * sgw,
        mask=mask,
        other=0.0,
    ).to(tl.float32)
    d_base = gx_ptr + b.to(tl.int64) * sdb + c.to(tl.int64) * sdc
    tl.store(d_base + orow[:, None] * sdh + ocol[None, :] * sdw, (go + adj).to(gx_ptr.dtype.element_ty), mask=mask)


def _block_for(halo: int) -> int:
    return triton.next_power_of_2(TILE + 2 * halo)


@lru_cache(maxsize=32)
def _banded_matrices_np(sigma_sharpen, amount, sigma_edge, truncate, halo, block):
    """V (4, TILE, BLOCK) and H (4, BLOCK, TILE) for the filter terms
    [g_x term 1, g_x term 2, g_y term 1, g_y term 2] (see the module docstring)."""
    g1, _ = (np.array(k) for k in gaussian_taps(sigma_sharpen, truncate))
    g2, d2 = (np.array(k) for k in gaussian_taps(sigma_edge, truncate))

    def centred(kernel):  # zero-pad to radius `halo`
        r = (kernel.size - 1) // 2
        return np.pad(kernel, (halo - r, halo - r))

    g12, d12 = np.convolve(g2, g1), np.convolve(d2, g1)  # correlation composition = convolution
    vert = [(1 + amount) * centred(g2), -amount * centred(g12), (1 + amount) * centred(d2), -amount * centred(d12)]
    horiz = [centred(d2), centred(d12), centred(g2), centred(g12)]
    # output t reads block index t + halo + s for s in [-halo, halo]: band offset k - t in [0, 2·halo]
    offset = np.arange(block)[None, :] - np.arange(TILE)[:, None]  # (TILE, BLOCK): k - t
    valid = (offset >= 0) & (offset <= 2 * halo)
    idx = np.clip(offset, 0, 2 * halo)
    V = np.stack([np.where(valid, f[idx], 0.0) for f in vert])
    Hm = np.stack([np.where(valid, f[idx], 0.0).T for f in horiz])
    return np.ascontiguousarray(V, dtype=np.float32), np.ascontiguousarray(Hm, dtype=np.float32)


def _banded_matrices(sigma_sharpen, amount, sigma_edge, truncate, device):
    halo = kernel_radius(sigma_sharpen, truncate) + kernel_radius(sigma_edge, truncate)
    block = _block_for(halo)
    V, Hm = _banded_matrices_np(sigma_sharpen, amount, sigma_edge, truncate, halo, block)
    return torch.from_numpy(V).to(device), torch.from_numpy(Hm).to(device), halo, block


def _launch_forward(x, go, out, wx, wy, params, backward):
    sigma_sharpen, amount, sigma_edge, beta, truncate, eps = params
    V, Hm, halo, block = _banded_matrices(sigma_sharpen, amount, sigma_edge, truncate, x.device)
    b, c, h, w = x.shape
    tiles_w = triton.cdiv(w, TILE)
    grid = (triton.cdiv(h, TILE) * tiles_w, b * c)
    go_strides = go.stride() if go is not None else (0, 0, 0, 0)
    out_strides = out.stride() if out is not None else (0, 0, 0, 0)
    _line_enhance_fwd_kernel[grid](
        x,
        go if go is not None else x,
        out if out is not None else x,
        wx if wx is not None else x,
        wy if wy is not None else x,
        V,
        Hm,
        c,
        h,
        w,
        tiles_w,
        *x.stride(),
        *go_strides,
        *out_strides,
        beta,
        eps,
        halo,
        BACKWARD=backward,
        TILE=TILE,
        BLOCK=block,
    )


class LineEnhanceFunction(torch.autograd.Function):
    """Autograd wrapper; (B, C, H, W) input of any strides; float32/float16/bfloat16."""

    @staticmethod
    def forward(ctx, x, sigma_sharpen, amount, sigma_edge, beta, truncate, eps):
        params = (sigma_sharpen, amount, sigma_edge, beta, truncate, eps)
        out = torch.empty_like(x)
        if x.numel() > 0:
            _launch_forward(x, None, out, None, None, params, backward=False)
        ctx.save_for_backward(x)
        ctx.params = params
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        params = ctx.params
        grad_x = torch.empty_like(x)
        if x.numel() == 0:
            return (grad_x,) + (None,) * 6
        b, c, h, w = x.shape
        wx = torch.empty((b * c, h, w), device=x.device, dtype=torch.float32)
        wy = torch.empty_like(wx)
        _launch_forward(x, grad_out, None, wx, wy, params, backward=True)
        sigma_sharpen, amount, sigma_edge, _, truncate, _ = params
        V, Hm, halo, block = _banded_matrices(sigma_sharpen, amount, sigma_edge, truncate, x.device)
        tiles_w = triton.cdiv(w, TILE)
        grid = (triton.cdiv(h, TILE) * tiles_w, b * c)
        _line_enhance_bwd_kernel[grid](
            wx,
            wy,
            grad_out,
            grad_x,
            V,
            Hm,
            c,
            h,
            w,
            tiles_w,
            *grad_out.stride(),
            *grad_x.stride(),
            halo,
            TILE=TILE,
            BLOCK=block,
        )
        return (grad_x,) + (None,) * 6


def line_enhance_fused(x, sigma_sharpen, amount, sigma_edge, beta, truncate=3.0, eps=1e-6):
    """Fused line enhancement; same contract as ``hrrkit.ops.line_enhance_reference``
    (float32/float16/bfloat16, halo r₁ + r₂ <= ``hrrkit.ops.line_enhance.FUSED_MAX_HALO``)."""
    return LineEnhanceFunction.apply(x, sigma_sharpen, amount, sigma_edge, beta, truncate, eps)


__all__ = ["LineEnhanceFunction", "line_enhance_fused"]
