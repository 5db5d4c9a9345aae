"""Functional API: one file per op, each holding the reference PyTorch implementation (the
specification) and its registration with the dispatcher (``impl="auto" | "reference" | "triton"``).
"""

from hrrkit.ops._dispatch import (
    IMPLS,
    FusedUnavailableError,
    OpSpec,
    dispatch,
    get_op,
    op_table,
    register_op,
    registered_ops,
    resolve_impl,
)
from hrrkit.ops.additive import additive_basis, additive_expand, additive_expand_reference
from hrrkit.ops.correntropy import correntropy_loss, correntropy_loss_reference
from hrrkit.ops.line_enhance import line_enhance, line_enhance_reference
from hrrkit.ops.moments import (
    multilevel_moments,
    multilevel_moments_reference,
    residual_multilevel_moments,
    residual_multilevel_moments_reference,
)

__all__ = [
    "IMPLS",
    "FusedUnavailableError",
    "OpSpec",
    "additive_basis",
    "additive_expand",
    "additive_expand_reference",
    "correntropy_loss",
    "correntropy_loss_reference",
    "dispatch",
    "get_op",
    "line_enhance",
    "line_enhance_reference",
    "multilevel_moments",
    "multilevel_moments_reference",
    "op_table",
    "register_op",
    "registered_ops",
    "resolve_impl",
    "residual_multilevel_moments",
    "residual_multilevel_moments_reference",
]
