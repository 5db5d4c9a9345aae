"""Composable ``nn.Module`` layers of HRR, each backed by an op in :mod:`hrrkit.ops`."""

from hrrkit.nn.additive import AdditiveOutput, SparseAdditiveRefinement
from hrrkit.nn.heads import HEADS, AdditiveRefinementHead, DetectorHead, HeadLoss, LinearHead
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
    "DetectorHead",
    "HEADS",
    "HeadLoss",
    "LinearHead",
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
