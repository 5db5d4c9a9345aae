"""Classifier heads: one contract for every head a detector puts on its pooled descriptor.

A head maps features ``(..., D)`` to logits ``(...)`` (positive = generated) and offers:

* ``loss(logits, targets) -> HeadLoss`` — the weighted training loss and its parts;
* ``proximal_step(lr)`` — called after every optimiser step (a no-op where nothing is applied
  outside the gradient);
* ``no_weight_decay() -> set[str]`` — names of its parameters (relative to the head) that
  weight decay must not touch (empty where none).

Built in: :class:`AdditiveRefinementHead` (AFR, the HRR head) and :class:`LinearHead` (a
batch-normalised linear logit, the baselines' head). ``HEADS`` maps ``HeadConfig.kind`` names to them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from hrrkit.nn.additive import SparseAdditiveRefinement
from hrrkit.nn.losses import CorrentropyLoss

PENALTY_MODES = ("loss", "proximal")

__all__ = ["HEADS", "PENALTY_MODES", "AdditiveRefinementHead", "DetectorHead", "HeadLoss", "LinearHead"]


class HeadLoss(NamedTuple):
    """The loss of a head and its parts (0-dim tensors; log ``as_floats()``).

    Attributes:
        total: what to call ``backward()`` on.
        bce: binary cross-entropy on the logits (0 when its weight is 0), unweighted.
        correntropy: correntropy-induced loss (0 when its weight is 0), unweighted.
        penalty: the weighted sparsity term (0 for heads without one); part of ``total`` only
            when the head adds it to the loss (detached otherwise).
    """

    total: torch.Tensor
    bce: torch.Tensor
    correntropy: torch.Tensor
    penalty: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """``{"bce", "correntropy", "penalty"}`` as Python floats, for training logs."""
        return {"bce": self.bce.item(), "correntropy": self.correntropy.item(), "penalty": self.penalty.item()}


def _check_pair(logits: torch.Tensor, targets: torch.Tensor, where: str) -> None:
    if logits.shape != targets.shape:
        raise ValueError(f"{where}.loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")


class DetectorHead(nn.Module):
    """Base of the heads (see the module docstring): the default hooks are no-ops."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> HeadLoss:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, in_features: int, head, loss) -> DetectorHead:  # pragma: no cover - abstract
        """The head for a ``HeadConfig``-like ``head`` and ``LossConfig``-like ``loss`` (read by attribute)."""
        raise NotImplementedError

    def proximal_step(self, lr: float) -> None:
        """Nothing to apply outside the gradient."""

    def no_weight_decay(self) -> set[str]:
        """No parameter is exempt from weight decay (beyond the trainer's biases and norms)."""
        return set()


class LinearHead(DetectorHead):
    """Batch-normalised linear logit with BCE (+ optional correntropy) loss: the baselines' head.

    Args:
        in_features: D. bce_weight, correntropy_weight: loss weights (≥ 0).
        correntropy_sigma: σ of the correntropy loss, in logit units.

    Shapes: ``(..., D)`` → ``(...)``. Weights start at zero (logit 0 = score 0.5). A training batch
    of a single row is normalised with the running statistics (BatchNorm cannot use one row).
    """

    def __init__(self, in_features: int, bce_weight: float = 1.0, correntropy_weight: float = 0.0,
                 correntropy_sigma: float = 1.0):
        super().__init__()
        if bce_weight < 0 or correntropy_weight < 0:
            raise ValueError(f"LinearHead: bce_weight and correntropy_weight must be >= 0, got {bce_weight}, "
                             f"{correntropy_weight}")
        self.norm = nn.BatchNorm1d(in_features, affine=False)
        self.linear = nn.Linear(in_features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.bce_weight, self.correntropy_weight = float(bce_weight), float(correntropy_weight)
        self.correntropy = CorrentropyLoss(sigma=correntropy_sigma)

    @classmethod
    def from_config(cls, in_features: int, head, loss) -> LinearHead:
        return cls(in_features, loss.bce, loss.correntropy, loss.correntropy_sigma)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        shape = features.shape[:-1]
        flat = features.reshape(-1, features.shape[-1])
        if self.training and flat.shape[0] == 1:
            flat = F.batch_norm(flat, self.norm.running_mean, self.norm.running_var, training=False, eps=self.norm.eps)
        else:
            flat = self.norm(flat)
        return self.linear(flat).reshape(shape)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> HeadLoss:
        """``bce_weight·BCE + correntropy_weight·ℓ_σ``; ``targets`` in {0, 1}, shaped like ``logits``."""
        _check_pair(logits, targets, "LinearHead")
        zero = logits.new_zeros(())
        t = targets.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, t) if self.bce_weight else zero
        cor = self.correntropy(logits, t) if self.correntropy_weight else zero
        total = self.bce_weight * bce + self.correntropy_weight * cor
        return HeadLoss(total=total, bce=bce.detach(), correntropy=cor.detach(), penalty=zero)

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, correntropy_weight={self.correntropy_weight}"


class AdditiveRefinementHead(DetectorHead):
    """Binary classifier head on any pooled feature ``(B, D)``: AFR plus its training loss.

    ``logits = head(features)``; ``parts = head.loss(logits, targets)``;
    ``parts.total.backward()``; then ``head.proximal_step(lr)`` after the optimiser step (it applies
    the group soft-threshold in ``penalty_mode="proximal"`` and is a no-op in ``"loss"`` mode).

    The loss is ``bce_weight·BCE + correntropy_weight·ℓ_σ + λ·Σ_j τ_j ‖β_j‖₂`` with targets in
    {0, 1} (1 = generated). ``penalty_mode="loss"`` adds the penalty to the total (its subgradient
    shrinks groups but rarely to exactly zero); ``"proximal"`` leaves it out of the gradient and
    applies it exactly through :meth:`proximal_step`, which zeroes whole dimensions.

    All constructor arguments are plain numbers or strings, so a config dataclass can hold them.

    Args:
        in_features: D.
        num_basis, basis, normalization, sigmas, extrapolation, init, impl: passed to
            :class:`SparseAdditiveRefinement`.
        bce_weight: weight of the binary cross-entropy (≥ 0).
        correntropy_weight: weight of the correntropy-induced loss (≥ 0).
        correntropy_sigma: σ of the correntropy loss, in logit units.
        sparsity: λ ≥ 0, the weight of the group penalty.
        penalty_mode: ``"loss"`` or ``"proximal"``.
    """

    def __init__(
        self,
        in_features: int,
        num_basis: int = 8,
        basis: str = "bspline",
        normalization: str = "tanh",
        sigmas: float = 2.0,
        extrapolation: str = "clamp",
        bce_weight: float = 1.0,
        correntropy_weight: float = 0.0,
        correntropy_sigma: float = 1.0,
        sparsity: float = 1e-3,
        penalty_mode: str = "loss",
        init: str = "zeros",
        impl: str = "auto",
    ):
        super().__init__()
        if bce_weight < 0 or correntropy_weight < 0 or sparsity < 0:
            raise ValueError(
                "AdditiveRefinementHead: bce_weight, correntropy_weight and sparsity must be >= 0, got "
                f"{bce_weight}, {correntropy_weight}, {sparsity}"
            )
        if bce_weight == 0 and correntropy_weight == 0:
            raise ValueError("AdditiveRefinementHead: bce_weight and correntropy_weight are both 0; nothing to fit")
        if penalty_mode not in PENALTY_MODES:
            raise ValueError(f"AdditiveRefinementHead: penalty_mode={penalty_mode!r}, expected one of {PENALTY_MODES}")
        self.afr = SparseAdditiveRefinement(
            in_features, num_basis=num_basis, basis=basis, normalization=normalization, sigmas=sigmas,
            extrapolation=extrapolation, init=init, impl=impl,
        )
        self.bce_weight = float(bce_weight)
        self.correntropy_weight = float(correntropy_weight)
        self.sparsity = float(sparsity)
        self.penalty_mode = penalty_mode
        self.correntropy = CorrentropyLoss(sigma=correntropy_sigma, target_format="binary", impl=impl)

    @classmethod
    def from_config(cls, in_features: int, head, loss) -> AdditiveRefinementHead:
        return cls(in_features, num_basis=head.num_basis, basis=head.basis, normalization=head.normalization,
                   bce_weight=loss.bce, correntropy_weight=loss.correntropy, correntropy_sigma=loss.correntropy_sigma,
                   sparsity=loss.sparsity, penalty_mode=head.penalty_mode)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(...)`` for features ``(..., D)`` (positive = generated)."""
        return self.afr(features).logit

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> HeadLoss:
        """The weighted loss and its parts; ``targets`` in {0, 1}, shaped like ``logits``."""
        _check_pair(logits, targets, "AdditiveRefinementHead")
        zero = logits.new_zeros((), dtype=torch.float32)
        t = targets.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, t) if self.bce_weight > 0 else zero
        cor = self.correntropy(logits, t) if self.correntropy_weight > 0 else zero
        penalty = self.sparsity * self.afr.penalty() if self.sparsity > 0 else zero
        total = self.bce_weight * bce + self.correntropy_weight * cor
        if self.penalty_mode == "loss":
            total = total + penalty
        else:
            penalty = penalty.detach()
        return HeadLoss(total=total, bce=bce.detach(), correntropy=cor.detach(), penalty=penalty.detach())

    def proximal_step(self, lr: float) -> None:
        """In ``penalty_mode="proximal"``, apply the group soft-threshold for λ = ``sparsity`` at learning
        rate ``lr``; in ``"loss"`` mode the penalty is already in the gradient, so nothing happens."""
        if self.penalty_mode == "proximal":
            self.afr.proximal_step(lr, self.sparsity)

    def no_weight_decay(self) -> set[str]:
        """The additive coefficients: they have their own (group-sparsity) penalty."""
        return {"afr.beta"}

    def active_dimensions(self, threshold: float = 0.0) -> torch.Tensor:
        """Feature dimensions the head still uses (see :meth:`SparseAdditiveRefinement.active_dimensions`)."""
        return self.afr.active_dimensions(threshold)

    def extra_repr(self) -> str:
        return (
            f"bce_weight={self.bce_weight}, correntropy_weight={self.correntropy_weight}, "
            f"sparsity={self.sparsity}, penalty_mode={self.penalty_mode!r}"
        )


HEADS: dict[str, type[DetectorHead]] = {"additive": AdditiveRefinementHead, "linear": LinearHead}
