"""Additive Feature Refinement (AFR): the correntropy sparse additive machine as layers.

:class:`SparseAdditiveRefinement` turns a feature vector ``h`` (``(B, D)``, or any ``(..., D)``)
into per-dimension shape functions g_j(h_j) = Σ_k β_jk φ_k(u_j), where u_j is h_j normalised into
the fixed basis range, and returns both the refined vector ``g(h)`` and the additive logit
``b + Σ_j g_j(h_j)``. A weighted group-lasso penalty Σ_j τ_j ‖β_j‖₂ and its proximal operator
switch redundant dimensions off exactly.

The classifier head built on it (refinement + loss), :class:`~hrrkit.nn.heads.AdditiveRefinementHead`,
lives in :mod:`hrrkit.nn.heads` beside the linear baseline head.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hrrkit.ops.additive import additive_basis, additive_expand, check_basis_args

NORMALIZATIONS = ("tanh", "standardize", "none")
INITS = ("zeros", "linear")


class AdditiveOutput(NamedTuple):
    """What :class:`SparseAdditiveRefinement` returns.

    Attributes:
        refined: g(h), shape of the input ``(..., D)``: the shape functions at the sample.
        logit: b + Σ_j g_j(h_j), shape ``(...)`` (``(B,)`` for a ``(B, D)`` input).
    """

    refined: torch.Tensor
    logit: torch.Tensor


class SparseAdditiveRefinement(nn.Module):
    """Per-dimension additive shape functions with group sparsity over dimensions.

    Pipeline for an input ``h`` of shape ``(..., D)``:

    1. **normalise** each dimension into the basis range ``[lo, hi]`` with running statistics
       (``normalization``):

       * ``"tanh"`` (default): ``z = (h − μ)/√(σ² + eps)``, ``u = m + r·tanh(z / sigmas)`` with
         ``m, r`` the range's midpoint and half-width. Every value lands strictly inside the
         range, heavy tails are squashed smoothly; ``sigmas`` sets how many standard deviations
         use the steep, near-linear part of tanh.
       * ``"standardize"``: ``u = m + r·z / sigmas`` — an affine map that puts ±``sigmas``
         standard deviations on the range ends; values beyond use ``extrapolation``.
       * ``"none"``: ``u = h`` (the caller guarantees the range).

       μ and σ² follow BatchNorm's convention: in training mode they are the batch's statistics
       over every leading dimension (and update the running averages with ``momentum``); in eval
       mode, and for a training batch of a single row, the running averages. They are treated as
       constants in backpropagation: they only place the data in the basis range.
    2. **expand**: ``g[..., j] = Σ_k β[j, k] φ_k(u[..., j])`` with :func:`hrrkit.ops.additive_expand`
       (fused Triton kernel on CUDA).
    3. **sum**: ``logit = b + Σ_j g[..., j]``.

    Sparsity. ``group_norms()`` gives ‖β_j‖₂; ``penalty()`` is Ω(β) = Σ_j τ_j ‖β_j‖₂ with adaptive
    weights τ (all ones until :meth:`set_adaptive_weights` is called, typically after a first,
    lightly penalised fit: τ_j = (mean_i ‖β̃_i‖ / ‖β̃_j‖)^γ, the adaptive group lasso, so strong
    dimensions are penalised less and weak ones more). :meth:`proximal_step` applies the group
    soft-threshold, which sets whole rows β_j to exactly zero; :meth:`active_dimensions` lists the
    survivors.

    Args:
        num_features: D.
        num_basis: K (≥ 4 for ``"bspline"``, ≥ 2 for ``"rbf"``).
        basis: ``"bspline"`` (uniform cubic) or ``"rbf"`` (Gaussian); see :mod:`hrrkit.ops.additive`.
        normalization: ``"tanh"``, ``"standardize"`` or ``"none"`` (above).
        sigmas: standard deviations per half-range for the normalisation (> 0).
        lo, hi: the basis range.
        rbf_width: Gaussian width (in normalised units), default the centre spacing.
        extrapolation: ``"clamp"`` or ``"linear"`` for normalised values outside the range.
        momentum: running-statistics update rate (as in BatchNorm).
        eps: variance floor of the normalisation.
        init: ``"zeros"`` (g ≡ 0, logit = b at start) or ``"linear"`` (β fitted so that
            g_j(u) = u: the refined vector starts as the normalised input).
        impl: ``"auto"``, ``"reference"`` or ``"triton"`` for the expansion.

    Shapes:
        input ``(..., D)`` float; output :class:`AdditiveOutput` with ``refined (..., D)`` and
        ``logit (...)``, float32 (or float64 for a float64 input and module).
    """

    def __init__(
        self,
        num_features: int,
        num_basis: int = 8,
        basis: str = "bspline",
        normalization: str = "tanh",
        sigmas: float = 2.0,
        lo: float = -1.0,
        hi: float = 1.0,
        rbf_width: float | None = None,
        extrapolation: str = "clamp",
        momentum: float = 0.1,
        eps: float = 1e-5,
        init: str = "zeros",
        impl: str = "auto",
    ):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"SparseAdditiveRefinement: num_features must be a positive int, got {num_features!r}")
        check_basis_args(num_basis, basis, lo, hi, rbf_width, extrapolation)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"SparseAdditiveRefinement: normalization={normalization!r}, expected one of {NORMALIZATIONS}"
            )
        if not sigmas > 0:
            raise ValueError(f"SparseAdditiveRefinement: sigmas must be > 0, got {sigmas}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SparseAdditiveRefinement: momentum must be in [0, 1], got {momentum}")
        if init not in INITS:
            raise ValueError(f"SparseAdditiveRefinement: init={init!r}, expected one of {INITS}")
        self.num_features = num_features
        self.num_basis = num_basis
        self.basis = basis
        self.normalization = normalization
        self.sigmas = float(sigmas)
        self.lo, self.hi = float(lo), float(hi)
        self.rbf_width = None if rbf_width is None else float(rbf_width)
        self.extrapolation = extrapolation
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.impl = impl
        self.beta = nn.Parameter(torch.zeros(num_features, num_basis))
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("tau", torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        if init == "linear":
            self.init_linear()

    # ------------------------------------------------------------------ construction helpers

    def _basis(self, x: torch.Tensor) -> torch.Tensor:
        return additive_basis(
            x, self.num_basis, basis=self.basis, lo=self.lo, hi=self.hi,
            rbf_width=self.rbf_width, extrapolation=self.extrapolation,
        )

    @torch.no_grad()
    def init_linear(self, scale: float = 1.0) -> None:
        """Set every shape function to g_j(u) ≈ scale·u (least squares on a fine grid of the range;
        exact for the B-spline basis, which reproduces straight lines)."""
        grid = torch.linspace(self.lo, self.hi, 512, dtype=torch.float64)
        design = self._basis(grid)
        coef = torch.linalg.lstsq(design, (scale * grid)[:, None]).solution[:, 0]
        self.beta.copy_(coef.to(self.beta.dtype).expand(self.num_features, -1))

    # ------------------------------------------------------------------ forward

    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """Map ``h (..., D)`` into the basis range (see the class docstring); float32 or float64."""
        if h.shape[-1] != self.num_features:
            raise ValueError(
                f"SparseAdditiveRefinement: expected {self.num_features} features in the last "
                f"dimension, got input of shape {tuple(h.shape)}"
            )
        x = h.to(torch.promote_types(h.dtype, torch.float32))
        if self.normalization == "none":
            return x
        rows = x.reshape(-1, self.num_features)
        if self.training and rows.shape[0] > 1:
            with torch.no_grad():
                var, mean = torch.var_mean(rows.detach(), dim=0, correction=0)
                n = rows.shape[0]
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        z = (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + self.eps)
        mid, half = 0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo)
        if self.normalization == "tanh":
            return mid + half * torch.tanh(z / self.sigmas)
        return mid + half * z / self.sigmas

    def forward(self, h: torch.Tensor) -> AdditiveOutput:
        u = self.normalize(h)
        g = additive_expand(
            u, self.beta, basis=self.basis, lo=self.lo, hi=self.hi, rbf_width=self.rbf_width,
            extrapolation=self.extrapolation, impl=self.impl,
        )
        return AdditiveOutput(refined=g, logit=self.bias + g.sum(-1))

    # ------------------------------------------------------------------ sparsity

    def group_norms(self) -> torch.Tensor:
        """‖β_j‖₂ for every dimension, shape ``(D,)`` (differentiable)."""
        return torch.linalg.vector_norm(self.beta, dim=1)

    def penalty(self) -> torch.Tensor:
        """Ω(β) = Σ_j τ_j ‖β_j‖₂, a differentiable scalar (multiply by λ yourself)."""
        return (self.tau.to(self.beta.dtype) * self.group_norms()).sum()

    @torch.no_grad()
    def set_adaptive_weights(
        self, gamma: float = 1.0, reference: torch.Tensor | None = None, eps: float = 1e-3
    ) -> torch.Tensor:
        """Adaptive group-lasso weights from an initial fit.

        τ_j = (mean_i ‖β̃_i‖ / max(‖β̃_j‖, eps·mean_i ‖β̃_i‖))^γ, where β̃ is ``reference`` (a ``(D, K)``
        coefficient matrix) or, by default, the current β. Scale-free: a dimension of average
        strength gets τ = 1, so λ keeps its meaning; a dimension the initial fit left at zero
        gets the largest weight, (1/eps)^γ.

        Returns:
            The new τ, shape ``(D,)`` (also stored in the ``tau`` buffer).
        """
        if not gamma >= 0:
            raise ValueError(f"set_adaptive_weights: gamma must be >= 0, got {gamma}")
        beta = self.beta if reference is None else reference
        if tuple(beta.shape) != tuple(self.beta.shape):
            raise ValueError(
                f"set_adaptive_weights: reference must have shape {tuple(self.beta.shape)}, got {tuple(beta.shape)}"
            )
        norms = torch.linalg.vector_norm(beta.detach().to(self.tau.dtype), dim=1)
        scale = norms.mean()
        if not scale > 0:
            raise ValueError("set_adaptive_weights: every group norm of the reference fit is zero; fit first")
        self.tau.copy_((scale / norms.clamp_min(eps * scale)) ** gamma)
        return self.tau.clone()

    @torch.no_grad()
    def reset_adaptive_weights(self) -> None:
        """τ_j = 1 for every dimension (the plain group lasso)."""
        self.tau.fill_(1.0)

    def active_dimensions(self, threshold: float = 0.0) -> torch.Tensor:
        """Indices j with ‖β_j‖₂ > threshold, ascending, shape ``(n_active,)`` (int64)."""
        return torch.nonzero(self.group_norms().detach() > threshold).flatten()

    @torch.no_grad()
    def proximal_step(self, lr: float, strength: float) -> None:
        """Group soft-threshold: β_j ← β_j · max(0, 1 − lr·strength·τ_j / ‖β_j‖₂).

        This is the proximal operator of lr·strength·Ω; call it after each optimiser step
        (proximal gradient descent: with plain SGD at learning rate ``lr`` it is exact; with
        adaptive optimisers it is the usual practical approximation). Rows whose norm is below
        the threshold become exactly zero.
        """
        if lr < 0 or strength < 0:
            raise ValueError(f"proximal_step: lr and strength must be >= 0, got {lr}, {strength}")
        norms = torch.linalg.vector_norm(self.beta, dim=1)
        threshold = lr * strength * self.tau.to(self.beta.dtype)
        factor = torch.where(norms > threshold, 1.0 - threshold / norms.clamp_min(1e-30), torch.zeros_like(norms))
        self.beta.mul_(factor[:, None])

    # ------------------------------------------------------------------ inspection

    @torch.no_grad()
    def shape_functions(
        self, grid: int | torch.Tensor = 101, dims: torch.Tensor | list[int] | None = None, space: str = "normalized"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned g_j on a grid, for plotting.

        Args:
            grid: number of points, or the points themselves — a ``(G,)`` tensor in normalised
                units for ``space="normalized"``, or ``(G,)``/``(G, len(dims))`` in input units for
                ``space="input"``.
            dims: which dimensions (default all).
            space: ``"normalized"`` — x in the basis range ``[lo, hi]`` — or ``"input"`` — x in
                the units of h (default grid: running mean ± 3 running std; the running statistics
                normalise it, as in eval mode).

        Returns:
            ``(x, g)``, both ``(G, len(dims))``: the grid per dimension and g_j at those points.
        """
        if space not in ("normalized", "input"):
            raise ValueError(f"shape_functions: space={space!r}, expected 'normalized' or 'input'")
        idx = torch.arange(self.num_features) if dims is None else torch.as_tensor(dims, dtype=torch.long)
        idx = idx.to(self.beta.device)
        beta = self.beta[idx]
        n = idx.numel()
        dtype = torch.promote_types(self.beta.dtype, torch.float32)
        if space == "normalized":
            x = torch.linspace(self.lo, self.hi, grid) if isinstance(grid, int) else torch.as_tensor(grid)
            x = x.to(self.beta.device, dtype)
            x = x[:, None].expand(-1, n) if x.dim() == 1 else x
            u = x
        else:
            mean = self.running_mean[idx].to(dtype)
            std = (self.running_var[idx].to(dtype) + self.eps).sqrt()
            if isinstance(grid, int):
                t = torch.linspace(-3.0, 3.0, grid, device=self.beta.device, dtype=dtype)
                x = mean + t[:, None] * std
            else:
                x = torch.as_tensor(grid).to(self.beta.device, dtype)
                x = x[:, None].expand(-1, n) if x.dim() == 1 else x
            if self.normalization == "none":
                u = x
            else:
                z = (x - mean) / std
                mid, half = 0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo)
                u = mid + half * (torch.tanh(z / self.sigmas) if self.normalization == "tanh" else z / self.sigmas)
        g = additive_expand(
            u.contiguous(), beta, basis=self.basis, lo=self.lo, hi=self.hi, rbf_width=self.rbf_width,
            extrapolation=self.extrapolation, impl="reference",
        )
        return x, g

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, num_basis={self.num_basis}, basis={self.basis!r}, "
            f"normalization={self.normalization!r}, range=[{self.lo}, {self.hi}], "
            f"extrapolation={self.extrapolation!r}"
        )
