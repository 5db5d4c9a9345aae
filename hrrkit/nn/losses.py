"""Loss modules."""

from __future__ import annotations

import torch
from torch import nn

from hrrkit.ops.correntropy import REDUCTIONS, correntropy_loss


class CorrentropyLoss(nn.Module):
    """Correntropy-induced loss σ²(1 − exp(−(1 − y·f)²/σ²)) for binary classification.

    Bounded by σ², so a mislabelled or outlying sample costs at most σ² (robust to label noise);
    approaches the squared hinge-free margin loss (1 − y·f)² as σ → ∞.

    Args:
        sigma: kernel width σ > 0, in logit units.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        target_format: ``"binary"`` — targets in {0, 1} like ``BCEWithLogitsLoss`` (mapped to
            y = 2t − 1) — or ``"signed"`` — targets already in {−1, +1}.
        impl: ``"auto"``, ``"reference"`` or ``"triton"``.

    Shapes:
        logits (*), float; targets (*), float or integer. Output: scalar, or (*) for ``"none"``.
    """

    def __init__(
        self, sigma: float = 1.0, reduction: str = "mean", target_format: str = "binary", impl: str = "auto"
    ):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"CorrentropyLoss: reduction={reduction!r}, expected one of {REDUCTIONS}")
        if target_format not in ("binary", "signed"):
            raise ValueError(f"CorrentropyLoss: target_format={target_format!r}, expected 'binary' or 'signed'")
        if not sigma > 0:
            raise ValueError(f"CorrentropyLoss: sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self.reduction = reduction
        self.target_format = target_format
        self.impl = impl

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = targets.to(logits.dtype)
        if self.target_format == "binary":
            y = 2.0 * y - 1.0
        return correntropy_loss(logits, y, sigma=self.sigma, reduction=self.reduction, impl=self.impl)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, reduction={self.reduction!r}, target_format={self.target_format!r}"
