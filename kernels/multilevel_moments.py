"""Fused multi-level moments: one pass over the map, per-channel mean/variance for every grid cell.

The cell boundaries of all levels cut each side into *atoms* (the intervals between consecutive
distinct boundaries); every cell of every level is a union of atom rectangles, and atoms partition
the map. The kernel reads every pixel exactly once and produces, per (b, atom, channel), the count,
mean and sum of squared deviations (M2) with Chan's parallel update over pixel tiles (each tile
is reduced two-pass in registers, in float32), which is numerically stable. Cells are then
assembled from atoms with the exact pairwise formula (a tiny (B, C, atoms) computation in float64,
done with differentiable torch ops)::

    N_k = Σ_a n_a,  mean_k = Σ_a n_a·mean_a / N_k,
    M2_k = Σ_a M2_a + Σ_a n_a·(mean_a − c)² − N_k·(mean_k − c)²   (c: whole-map mean)

The residual variant loads a and b and reduces |a − b| on the fly (never materialised).

Backward, per pixel of atom a: ∂L/∂v = ġ_mean,a / n_a + 2·ġ_M2,a·(v − mean_a); for the residual,
∂L/∂a = sign(a − b)·∂L/∂v and ∂L/∂b = −∂L/∂a (sign(0) = 0, as torch.abs).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl
from hrrkit.kernels._grid import cell_bounds, cell_boxes

BLOCK_C = 32
BLOCK_P = 64


@triton.jit
def _atom_tile(
    x_ptr,
    y_ptr,
    base_x,
    base_y,
    cs,
    c_mask,
    p0,
    npix,
    w0,
    h0,
    wl,
    sxc,
    sxh,
    sxw,
    syc,
    syh,
    syw,
    RESIDUAL: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    p = p0 + tl.arange(0, BLOCK_P)
    p_mask = p < npix
    hh = h0 + p // wl
    ww = w0 + p % wl
    mask = c_mask[:, None] & p_mask[None, :]
    v = tl.load(x_ptr + base_x + cs[:, None] * sxc + (hh * sxh + ww * sxw)[None, :], mask=mask, other=0.0)
    v = v.to(tl.float32)
    if RESIDUAL:
        u = tl.load(y_ptr + base_y + cs[:, None] * syc + (hh * syh + ww * syw)[None, :], mask=mask, other=0.0)
        d = v - u.to(tl.float32)
        return tl.abs(d), d, mask, hh, ww
    else:
        return v, v, mask, hh, ww


@triton.jit
def _moments_fwd_kernel(
    x_ptr,
    y_ptr,
    geo_ptr,
    mean_ptr,
    m2_ptr,
    C,
    A,
    sxb,
    sxc,
    sxh,
    sxw,
    syb,
    syc,
    syh,
    syw,
    RESIDUAL: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // A
    a = pid % A
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = cs < C
    h0 = tl.load(geo_ptr + a * 4)
    hl = tl.load(geo_ptr + a * 4 + 1)
    w0 = tl.load(geo_ptr + a * 4 + 2)
    wl = tl.load(geo_ptr + a * 4 + 3)
    npix = hl * wl
    base_x = b.to(tl.int64) * sxb
    base_y = b.to(tl.int64) * syb
    count = 0.0
    mean = tl.zeros((BLOCK_C,), dtype=tl.float32)
    m2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for p0 in range(0, npix, BLOCK_P):
        v, _, mask, _, _ = _atom_tile(
            x_ptr,
            y_ptr,
            base_x,
            base_y,
            cs,
            c_mask,
            p0,
            npix,
            w0,
            h0,
            wl,
            sxc,
            sxh,
            sxw,
            syc,
            syh,
            syw,
            RESIDUAL,
            BLOCK_P,
        )
        n_tile = tl.minimum(npix - p0, BLOCK_P).to(tl.float32)
        t_mean = tl.sum(v, axis=1) / n_tile
        dev = tl.where(mask, v - t_mean[:, None], 0.0)
        t_m2 = tl.sum(dev * dev, axis=1)
        total = count + n_tile
        delta = t_mean - mean
        mean += delta * (n_tile / total)
        m2 += t_m2 + delta * delta * (count * n_tile / total)
        count = total
    out = (b.to(tl.int64) * A + a) * C + cs
    tl.store(mean_ptr + out, mean, mask=c_mask)
    tl.store(m2_ptr + out, m2, mask=c_mask)


@triton.jit
def _moments_bwd_kernel(
    x_ptr,
    y_ptr,
    geo_ptr,
    mean_ptr,
    gmean_ptr,
    gm2_ptr,
    dx_ptr,
    dy_ptr,
    C,
    A,
    sxb,
    sxc,
    sxh,
    sxw,
    syb,
    syc,
    syh,
    syw,
    sdb,
    sdc,
    sdh,
    sdw,
    seb,
    sec,
    seh,
    sew,
    RESIDUAL: tl.constexpr,
    NEED_DY: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // A
    a = pid % A
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = cs < C
    h0 = tl.load(geo_ptr + a * 4)
    hl = tl.load(geo_ptr + a * 4 + 1)
    w0 = tl.load(geo_ptr + a * 4 + 2)
    wl = tl.load(geo_ptr + a * 4 + 3)
    npix = hl * wl
    stat = (b.to(tl.int64) * A + a) * C + cs
    mean = tl.load(mean_ptr + stat, mask=c_mask, other=0.0)
    g_mean = tl.load(gmean_ptr + stat, mask=c_mask, other=0.0) / npix.to(tl.float32)
    g_m2 = 2.0 * tl.load(gm2_ptr + stat, mask=c_mask, other=0.0)
    base_x = b.to(tl.int64) * sxb
    base_y = b.to(tl.int64) * syb
    for p0 in range(0, npix, BLOCK_P):
        v, d, mask, hh, ww = _atom_tile(
            x_ptr,
            y_ptr,
            base_x,
            base_y,
            cs,
            c_mask,
            p0,
            npix,
            w0,
            h0,
            wl,
            sxc,
            sxh,
            sxw,
            syc,
            syh,
            syw,
            RESIDUAL,
            BLOCK_P,
        )
        g = g_mean[:, None] + g_m2[:, None] * (v - mean[:, None])
        if RESIDUAL:
            g = tl.where(d > 0, g, tl.where(d < 0, -g, 0.0))
        dx_off = b.to(tl.int64) * sdb + cs[:, None] * sdc + (hh * sdh + ww * sdw)[None, :]
        tl.store(dx_ptr + dx_off, g.to(dx_ptr.dtype.element_ty), mask=mask)
        if NEED_DY:
            dy_off = b.to(tl.int64) * seb + cs[:, None] * sec + (hh * seh + ww * sew)[None, :]
            tl.store(dy_ptr + dy_off, (-g).to(dy_ptr.dtype.element_ty), mask=mask)


@lru_cache(maxsize=128)
def _atoms(height: int, width: int, levels: tuple[int, ...]):
    """Atom geometry (A, 4) int32 rows (top, height, left, width), atom counts (A,), and the
    atom-to-cell membership matrix (A, K)."""

    def cuts(length):
        bounds = {0, length}
        for n in levels:
            for start, stop in cell_bounds(length, n):
                bounds.update((start, stop))
        return sorted(bounds)

    rows, cols = cuts(height), cuts(width)
    atoms = [(r0, r1 - r0, c0, c1 - c0) for r0, r1 in zip(rows, rows[1:]) for c0, c1 in zip(cols, cols[1:])]
    geo = np.array(atoms, dtype=np.int32)
    boxes = cell_boxes(height, width, levels)
    member = np.zeros((len(atoms), len(boxes)), dtype=np.float64)
    for k, (top, bottom, left, right) in enumerate(boxes):
        for i, (r0, rl, c0, cl) in enumerate(atoms):
            member[i, k] = float(top <= r0 and r0 + rl <= bottom and left <= c0 and c0 + cl <= right)
    counts = (geo[:, 1] * geo[:, 3]).astype(np.float64)
    return geo, counts, member


class _AtomMomentsFunction(torch.autograd.Function):
    """(x[, y]) → per-atom (mean, M2), each (B, C, A) float32; backward w.r.t. x (and y)."""

    @staticmethod
    def forward(ctx, x, y, levels):
        bsz, c, h, w = x.shape
        geo_np, _, _ = _atoms(h, w, levels)
        geo = torch.from_numpy(geo_np).to(x.device)
        n_atoms = geo_np.shape[0]
        residual = y is not None
        mean = torch.empty((bsz, n_atoms, c), device=x.device, dtype=torch.float32)
        m2 = torch.empty_like(mean)
        ys = y if residual else x
        if x.numel() > 0:
            grid = (bsz * n_atoms, triton.cdiv(c, BLOCK_C))
            _moments_fwd_kernel[grid](
                x,
                ys,
                geo,
                mean,
                m2,
                c,
                n_atoms,
                *x.stride(),
                *ys.stride(),
                RESIDUAL=residual,
                BLOCK_C=BLOCK_C,
                BLOCK_P=BLOCK_P,
            )
        ctx.save_for_backward(x, ys, geo, mean)
        ctx.residual = residual
        return mean.permute(0, 2, 1), m2.permute(0, 2, 1)

    @staticmethod
    def backward(ctx, g_mean, g_m2):
        x, ys, geo, mean = ctx.saved_tensors
        bsz, c, h, w = x.shape
        n_atoms = geo.shape[0]
        residual = ctx.residual
        need_dy = residual and ctx.needs_input_grad[1]
        # (B, C, A) grads → the kernel's (B, A, C) layout
        g_mean = g_mean if g_mean is not None else torch.zeros_like(mean.permute(0, 2, 1))
        g_m2 = g_m2 if g_m2 is not None else torch.zeros_like(mean.permute(0, 2, 1))
        g_mean = g_mean.permute(0, 2, 1).contiguous().float()
        g_m2 = g_m2.permute(0, 2, 1).contiguous().float()
        dx = torch.empty_like(x)
        dy = torch.empty_like(ys) if need_dy else dx
        if x.numel() > 0:
            grid = (bsz * n_atoms, triton.cdiv(c, BLOCK_C))
            _moments_bwd_kernel[grid](
                x,
                ys,
                geo,
                mean,
                g_mean,
                g_m2,
                dx,
                dy,
                c,
                n_atoms,
                *x.stride(),
                *ys.stride(),
                *dx.stride(),
                *dy.stride(),
                RESIDUAL=residual,
                NEED_DY=need_dy,
                BLOCK_C=BLOCK_C,
                BLOCK_P=BLOCK_P,
            )
        return dx, (dy if need_dy else None), None


def _cells_from_atoms(atom_mean, atom_m2, height, width, levels, out_dtype):
    """Exact pairwise merge of atom statistics into the K cells (differentiable torch ops)."""
    _, counts_np, member_np = _atoms(height, width, levels)
    dev = atom_mean.device
    counts = torch.from_numpy(counts_np).to(dev)
    member = torch.from_numpy(member_np).to(dev)
    mean_a = atom_mean.double()
    m2_a = atom_m2.double()
    n_k = counts @ member  # (K,)
    centre = (mean_a * counts).sum(-1, keepdim=True) / counts.sum()  # whole-map mean (B, C, 1)
    shifted = mean_a - centre
    mean_k = (shifted * counts) @ member / n_k
    m2_k = m2_a @ member + (shifted * shifted * counts) @ member - n_k * mean_k * mean_k
    var_k = (m2_k / n_k).clamp_min(0.0)
    return (mean_k + centre).to(out_dtype), var_k.to(out_dtype)


def multilevel_moments_fused(x: torch.Tensor, levels=(1, 2, 4)):
    """Fused multi-level moments; same contract as ``hrrkit.ops.multilevel_moments_reference``."""
    levels = tuple(levels)
    atom_mean, atom_m2 = _AtomMomentsFunction.apply(x, None, levels)
    return _cells_from_atoms(atom_mean, atom_m2, x.shape[2], x.shape[3], levels, torch.float32)


def residual_multilevel_moments_fused(a: torch.Tensor, b: torch.Tensor, levels=(1, 2, 4)):
    """Fused moments of |a − b| (never materialised); same contract as the reference."""
    levels = tuple(levels)
    atom_mean, atom_m2 = _AtomMomentsFunction.apply(a, b, levels)
    return _cells_from_atoms(atom_mean, atom_m2, a.shape[2], a.shape[3], levels, torch.float32)
