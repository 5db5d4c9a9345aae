"""Correntropy-induced loss (the C-loss of the correntropy sparse additive machine).

For a margin ``u = 1 - y·f`` with label ``y ∈ {-1, +1}`` and score ``f``::

    ℓ_σ(y, f) = σ² · (1 − exp(−u² / σ²))

It is bounded by σ² (an outlier or a flipped label costs at most σ²) and approaches the squared
loss u² as σ → ∞. ``σ`` is in the units of the score.
"""

from __future__ import annotations

import math

import torch

from hrrkit.ops._dispatch import OpSpec, dispatch, register_op

REDUCTIONS = ("none", "mean", "sum")


def _check_args(logits: torch.Tensor, targets: torch.Tensor, sigma: float, reduction: str) -> None:
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"correntropy loss: sigma must be a positive finite number, got {sigma!r}")
    compute = torch.promote_types(logits.dtype, torch.float32)
    limits = torch.finfo(compute)
    if not limits.tiny <= sigma * sigma <= limits.max:
        # σ² is a factor of the loss in both paths; outside this range it is 0 or inf in `compute`
        lo, hi = math.sqrt(limits.tiny), math.sqrt(limits.max)
        raise ValueError(
            f"correntropy loss: sigma={sigma!r} squared does not fit {compute} (sigma must lie in "
            f"[{lo:.3g}, {hi:.3g}] for {logits.dtype} scores); for such a large sigma the loss is the "
            "squared margin (1 - y*f)^2"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"correntropy loss: reduction={reduction!r}, expected one of {REDUCTIONS}")
    if not logits.is_floating_point():
        raise TypeError(f"correntropy loss: logits must be floating point, got {logits.dtype}")


def correntropy_loss_reference(
    logits: torch.Tensor, targets: torch.Tensor, sigma: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Reference PyTorch implementation (the specification).

    Args:
        logits: scores f, any shape, floating point. Half precision is computed in float32.
        targets: labels y in {-1, +1} (any real value is accepted), broadcastable to ``logits``.
        sigma: kernel width σ > 0, in score units.
        reduction: ``"none"`` (per element, shape of the broadcast inputs), ``"mean"`` or ``"sum"``.

    Returns:
        The loss in the dtype of ``logits``.
    """
    compute = torch.promote_types(logits.dtype, torch.float32)
    f = logits.to(compute)
    y = targets.to(compute)
    u = 1.0 - y * f
    # -expm1 keeps σ²(1 - e^{-z}) accurate when z = u²/σ² is tiny (large σ).
    loss = -torch.expm1(-(u * u) / (sigma * sigma)) * (sigma * sigma)
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss.to(logits.dtype)


def _fused_unsupported(logits: torch.Tensor, targets: torch.Tensor) -> list[str]:
    reasons = []
    if logits.shape != targets.shape:
        reasons.append(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape "
            "(the fused kernel does not broadcast)"
        )
    if logits.numel() >= 2**31:
        reasons.append("more than 2^31 elements")
    return reasons


register_op(
    OpSpec(
        name="correntropy",
        reference=correntropy_loss_reference,
        fused_module="hrrkit.kernels.correntropy",
        fused_attr="correntropy_loss_fused",
        unsupported=_fused_unsupported,
        summary="correntropy-induced loss σ²(1 − exp(−(1 − y·f)²/σ²)), fwd+bwd",
    )
)


def correntropy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    sigma: float = 1.0,
    reduction: str = "mean",
    impl: str = "auto",
) -> torch.Tensor:
    """Correntropy-induced loss ℓ_σ(y, f) = σ²(1 − exp(−(1 − y·f)²/σ²)).

    Args:
        logits: scores f, any shape; float32, float16 or bfloat16 (accumulated in float32).
        targets: labels y in {-1, +1}, same shape (broadcasting runs the reference).
        sigma: kernel width σ > 0 in score units; the loss is bounded by σ².
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        impl: ``"auto"``, ``"reference"`` or ``"triton"`` (see :mod:`hrrkit.ops._dispatch`).

    Returns:
        Scalar for ``mean``/``sum``, else a tensor of the inputs' shape, in the dtype of ``logits``.
        Differentiable w.r.t. ``logits`` and ``targets``.
    """
    _check_args(logits, targets, sigma, reduction)
    fn = dispatch("correntropy", impl, (logits, targets))
    return fn(logits, targets, float(sigma), reduction)
