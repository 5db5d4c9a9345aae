"""hrrkit: Hierarchical Retrospection Refinement (HRR) for generated-image detection.

Layers (``hrrkit.nn``) are backed by fused Triton kernels (``hrrkit.kernels``) with a reference
PyTorch path (``hrrkit.ops``) that is the specification. See ``docs/`` for the design.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
