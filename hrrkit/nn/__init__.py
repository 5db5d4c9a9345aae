"""Composable ``nn.Module`` layers of HRR, each backed by an op in :mod:`hrrkit.ops`."""

from hrrkit.nn.additive import AdditiveOutput, AdditiveRefinementHead, HeadLoss, SparseAdditiveRefinement
from hrrkit.nn.losses import CorrentropyLoss
from hrrkit.nn.msr import (
    LineEnhancement,
    MSROutput,
    MultiScaleStyleRetrospection,
    NoisyRescale,
    ScaleConsistencyKL,
    ScaledViews,
    StyleStatistics,
    StyleStats,
)

__all__ = [
    "AdditiveOutput",
    "AdditiveRefinementHead",
    "HeadLoss",
    "SparseAdditiveRefinement",
    "CorrentropyLoss",
    "LineEnhancement",
    "MSROutput",
    "MultiScaleStyleRetrospection",
    "NoisyRescale",
    "ScaledViews",
    "ScaleConsistencyKL",
    "StyleStatistics",
    "StyleStats",
]
