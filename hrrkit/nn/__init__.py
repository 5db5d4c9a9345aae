"""Composable ``nn.Module`` layers of HRR, each backed by an op in :mod:`hrrkit.ops`."""

from hrrkit.nn.losses import CorrentropyLoss

# --- AFR modules (issue 3) below ---
from hrrkit.nn.additive import AdditiveOutput, AdditiveRefinementHead, HeadLoss, SparseAdditiveRefinement

# --- MSR modules (issue 4) below ---

__all__ = [
    "AdditiveOutput",
    "AdditiveRefinementHead",
    "HeadLoss",
    "SparseAdditiveRefinement",
    "CorrentropyLoss",
]
