"""Fused multi-level moments: one pass over the map, per-channel mean/variance for every grid cell.

The cell boundaries of all levels cut each side into *atoms* (the intervals between consecutive
distinct boundaries); every cell of every level is a union of atom rectangles, and atoms partition
the map. The atom geometry is computed on the ops side (:func:`hrrkit.ops.moments.atom_geometry`)
and handed in. The kernel reads every pixel exactly once and produces, per (b, atom, channel), the
mean and the population variance of ``v − p`` with Chan's parallel update over pixel tiles (each
tile reduced two-pass in registers, in float32), where the *pivot* p is the atom's first pixel
(0 if that pixel is not finite). Shifting by a value of the data keeps float32 exact at large
offsets (``1e6 + randn``: the differences are exact, the statistics are those of O(σ) numbers),
and carrying variances rather than sums of squares keeps magnitudes up to ~1e19 finite. Cells are
then assembled from atoms with the exact pairwise formula in float64 (a tiny (B, C, atoms)
computation, differentiable torch ops)::

    N_k = Σ_a n_a,  mean_k = Σ_a n_a·mean_a / N_k,
    M2_k = Σ_a n_a·var_a + Σ_a n_a·(mean_a − c)² − N_k·(mean_k − c)²   (c: mean of the finite atoms)

A non-finite atom makes non-finite only the cells that contain it, as in the reference: the merge
sums finite values only and marks the cells that hold an inf or NaN separately (a matrix product
with the 0/1 membership matrix would turn inf·0 into NaN everywhere).

The residual variant loads a and b and reduces |a − b| on the fly (never materialised).

Backward, per pixel of atom a: ∂L/∂v = ġ_mean,a / n_a + 2·ġ_var,a·((v − p) − shift_a)/n_a; for the residual,
∂L/∂a = sign(a − b)·∂L/∂v and ∂L/∂b = −∂L/∂a (sign(0) = 0, as torch.abs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_C = 32
BLOCK_P = 64
# 8 warps: with 4, the (channel × pixel) tile's 64-bit addresses took 167-254 registers per thread
NUM_WARPS = 8


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
def _pivot(x_ptr, y_ptr, base_x, base_y, cs, c_mask, h0, w0, sxc, sxh, sxw, syc, syh, syw, RESIDUAL: tl.constexpr):
    """The atom's first value per channel (0 where it is not finite): the shift of its statistics."""
    v = tl.load(x_ptr + base_x + cs * sxc + (h0 * sxh + w0 * sxw), mask=c_mask, other=0.0).to(tl.float32)
    if RESIDUAL:
        u = tl.load(y_ptr + base_y + cs * syc + (h0 * syh + w0 * syw), mask=c_mask, other=0.0).to(tl.float32)
        v = tl.abs(v - u)
    finite = (v == v) & (tl.abs(v) < float("inf"))
    return tl.where(finite, v, 0.0)


@triton.jit
def _moments_fwd_kernel(
    x_ptr,
    y_ptr,
    geo_ptr,
    pivot_ptr,
    mean_ptr,
    var_ptr,
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
    pivot = _pivot(x_ptr, y_ptr, base_x, base_y, cs, c_mask, h0, w0, sxc, sxh, sxw, syc, syh, syw, RESIDUAL)
    count = 0.0
    mean = tl.zeros((BLOCK_C,), dtype=tl.float32)
    var = tl.zeros((BLOCK_C,), dtype=tl.float32)
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
        v = tl.where(mask, v - pivot[:, None], 0.0)
        t_mean = tl.sum(v, axis=1) / n_tile
        dev = tl.where(mask, v - t_mean[:, None], 0.0)
        t_var = tl.sum(dev * (dev / n_tile), axis=1)  # divided before summing: no overflow near 1e19
        total = count + n_tile
        w_old = count / total
        w_new = n_tile / total
        delta = t_mean - mean
        mean += delta * w_new
        var = var * w_old + t_var * w_new + (delta * w_old) * (delta * w_new)
        count = total
    out = (b.to(tl.int64) * A + a) * C + cs
    tl.store(pivot_ptr + out, pivot, mask=c_mask)
    tl.store(mean_ptr + out, mean, mask=c_mask)
    tl.store(var_ptr + out, var, mask=c_mask)


@triton.jit
def _moments_bwd_kernel(
    x_ptr,
    y_ptr,
    geo_ptr,
    pivot_ptr,
    mean_ptr,
    gmean_ptr,
    gvar_ptr,
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
    pivot = tl.load(pivot_ptr + stat, mask=c_mask, other=0.0)
    mean = tl.load(mean_ptr + stat, mask=c_mask, other=0.0)
    g_mean = tl.load(gmean_ptr + stat, mask=c_mask, other=0.0) / npix.to(tl.float32)
    g_var = 2.0 * tl.load(gvar_ptr + stat, mask=c_mask, other=0.0) / npix.to(tl.float32)
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
        g = g_mean[:, None] + g_var[:, None] * ((v - pivot[:, None]) - mean[:, None])
        if RESIDUAL:
            g = tl.where(d > 0, g, tl.where(d < 0, -g, 0.0))
        dx_off = b.to(tl.int64) * sdb + cs[:, None] * sdc + (hh * sdh + ww * sdw)[None, :]
        tl.store(dx_ptr + dx_off, g.to(dx_ptr.dtype.element_ty), mask=mask)
        if NEED_DY:
            dy_off = b.to(tl.int64) * seb + cs[:, None] * sec + (hh * seh + ww * sew)[None, :]
            tl.store(dy_ptr + dy_off, (-g).to(dy_ptr.dtype.element_ty), mask=mask)


def max_offset(t: torch.Tensor) -> int:
    """Largest element offset inside one batch item, (C − 1)|s_c| + (H − 1)|s_h| + (W − 1)|s_w|: the
    kernels form it in int32 (the batch base is int64)."""
    return sum((n - 1) * abs(s) for n, s in zip(t.shape[1:], t.stride()[1:]))


class _AtomMomentsFunction(torch.autograd.Function):
    """(x[, y]) → per-atom (mean, var), each (B, C, A): mean float64 (pivot + shifted mean), var
    float32; backward w.r.t. x (and y). ``geo``: (A, 4) int32 atoms (top, height, left, width)."""

    @staticmethod
    def forward(ctx, x, y, geo_np):
        bsz, c, h, w = x.shape
        geo = torch.from_numpy(geo_np).to(x.device)
        n_atoms = geo_np.shape[0]
        residual = y is not None
        pivot = torch.empty((bsz, n_atoms, c), device=x.device, dtype=torch.float32)
        mean = torch.empty_like(pivot)
        var = torch.empty_like(pivot)
        ys = y if residual else x
        if x.numel() > 0:
            grid = (bsz * n_atoms, triton.cdiv(c, BLOCK_C))
            _moments_fwd_kernel[grid](
                x,
                ys,
                geo,
                pivot,
                mean,
                var,
                c,
                n_atoms,
                *x.stride(),
                *ys.stride(),
                RESIDUAL=residual,
                BLOCK_C=BLOCK_C,
                BLOCK_P=BLOCK_P,
                num_warps=NUM_WARPS,
            )
        ctx.save_for_backward(x, ys, geo, pivot, mean)
        ctx.residual = residual
        full_mean = pivot.double() + mean.double()
        return full_mean.permute(0, 2, 1), var.permute(0, 2, 1)

    @staticmethod
    def backward(ctx, g_mean, g_var):
        x, ys, geo, pivot, mean = ctx.saved_tensors
        bsz, c, h, w = x.shape
        n_atoms = geo.shape[0]
        residual = ctx.residual
        need_dy = residual and ctx.needs_input_grad[1]
        # (B, C, A) grads → the kernel's (B, A, C) layout
        zeros = torch.zeros_like(mean)
        g_mean = zeros if g_mean is None else g_mean.permute(0, 2, 1).contiguous().float()
        g_var = zeros if g_var is None else g_var.permute(0, 2, 1).contiguous().float()
        dx = torch.empty_like(x)
        dy = torch.empty_like(ys) if need_dy else dx
        if max(max_offset(dx), max_offset(dy)) >= 2**31:  # empty_like of an odd view: guard it too
            dx, dy = dx.contiguous(), dy.contiguous()
        if x.numel() > 0:
            grid = (bsz * n_atoms, triton.cdiv(c, BLOCK_C))
            _moments_bwd_kernel[grid](
                x,
                ys,
                geo,
                pivot,
                mean,
                g_mean,
                g_var,
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
                num_warps=NUM_WARPS,
            )
        return dx, (dy if need_dy else None), None


def _cells_from_atoms(atom_mean, atom_var, counts_np, member_np, out_dtype):
    """Exact pairwise merge of atom statistics (B, C, A) into the K cells (differentiable torch ops).

    Sums run over finite atoms only; a cell holding a non-finite atom gets the value the
    reference gives: mean +inf/−inf (NaN if it holds NaN or both signs), variance NaN."""
    dev = atom_mean.device
    counts = torch.from_numpy(counts_np).to(dev)
    member = torch.from_numpy(member_np).to(dev)
    mean_a = atom_mean.double()
    var_a = atom_var.double()
    finite = torch.isfinite(mean_a)
    mean_f = torch.where(finite, mean_a, 0.0)
    m2_f = torch.where(finite & torch.isfinite(var_a), var_a, 0.0) * counts
    w_f = finite.double() * counts
    n_k = counts @ member  # (K,)
    # centre: the mean of the finite atoms, so the shifted sums below do not cancel
    centre = (mean_f * w_f).sum(-1, keepdim=True) / w_f.sum(-1, keepdim=True).clamp_min(1.0)
    shifted = torch.where(finite, mean_f - centre, 0.0)
    mean_k = (shifted * counts) @ member / n_k
    m2_k = m2_f @ member + (shifted * shifted * counts) @ member - n_k * mean_k * mean_k
    var_k = (m2_k / n_k).clamp_min(0.0)
    mean_k = mean_k + centre
    # (always computed, no data-dependent branch: the arrays are tiny, and meta tensors work)
    hits = lambda cond: (cond.double() @ member) > 0  # noqa: E731 - a cell holds such an atom
    pos, neg = hits(mean_a == float("inf")), hits(mean_a == float("-inf"))
    nan = hits(torch.isnan(mean_a))
    bad_mean = pos | neg | nan
    bad_var = hits(~torch.isfinite(var_a))
    nan_t = torch.full_like(mean_k, float("nan"))
    odd_mean = torch.where(nan | (pos & neg), nan_t, torch.where(pos, float("inf"), float("-inf")))
    mean_k = torch.where(bad_mean, odd_mean, mean_k)
    # the variance of a cell with an inf or NaN is NaN; a finite cell whose variance overflowed is inf
    var_k = torch.where(bad_mean, nan_t, torch.where(bad_var, float("inf"), var_k))
    return mean_k.to(out_dtype), var_k.to(out_dtype)


def multilevel_moments_fused(x: torch.Tensor, geometry):
    """Fused multi-level moments; same contract as ``hrrkit.ops.multilevel_moments_reference``, with
    the cells given as ``geometry = (atoms (A, 4) int32, counts (A,), membership (A, K))`` of
    :func:`hrrkit.ops.moments.atom_geometry`."""
    geo, counts, member = geometry
    atom_mean, atom_var = _AtomMomentsFunction.apply(x, None, geo)
    return _cells_from_atoms(atom_mean, atom_var, counts, member, torch.float32)


def residual_multilevel_moments_fused(a: torch.Tensor, b: torch.Tensor, geometry):
    """Fused moments of |a − b| (never materialised); same contract as the reference."""
    geo, counts, member = geometry
    atom_mean, atom_var = _AtomMomentsFunction.apply(a, b, geo)
    return _cells_from_atoms(atom_mean, atom_var, counts, member, torch.float32)
