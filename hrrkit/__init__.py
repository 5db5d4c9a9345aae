"""hrrkit: Hierarchical Retrospection Refinement (HRR) for generated-image detection.

Layers (``hrrkit.nn``) are backed by fused Triton kernels (``hrrkit.kernels``) with a reference
PyTorch path (``hrrkit.ops``) that is the specification. See ``docs/`` for the design.

``hrrkit.HRRDetector``, ``hrrkit.DetectorConfig`` and ``hrrkit.load_detector`` are imported lazily,
so ``import hrrkit`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "HRRDetector": "hrrkit.models.detector",
    "load_detector": "hrrkit.models.detector",
    "preset_config": "hrrkit.models.presets",
    "DetectorConfig": "hrrkit.models.config",
    "save_detector": "hrrkit.models.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hrrkit' has no attribute {name!r}")
