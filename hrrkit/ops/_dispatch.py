"""Implementation dispatch shared by every fused op (design.md §5).

Each op registers an :class:`OpSpec`: its reference implementation (the specification), a lazy
loader for the fused Triton implementation and a function listing the reasons the fused path
cannot run for given inputs. :func:`resolve_impl` turns the requested implementation into the one
that runs:

* ``impl="reference"`` always runs the reference.
* ``impl="triton"`` runs the fused kernel or raises :class:`FusedUnavailableError` naming every
  reason it cannot; it never falls back silently.
* ``impl="auto"`` (the default) first consults the environment (``HRRKIT_IMPL_<OP>``, then
  ``HRRKIT_IMPL``); when that is unset or ``auto`` too, the fused kernel runs on CUDA tensors when
  it can and the reference otherwise (on CPU always the reference: the Triton interpreter is for
  tests, reached only by an explicit ``triton``). An explicit ``impl`` argument always beats the
  environment.

Under ``torch.compile`` ``auto`` resolves to the reference without reading the environment, so that
the compiler sees plain PyTorch ops and traces them without graph breaks.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import torch

Impl = Literal["auto", "reference", "triton"]
IMPLS: tuple[str, ...] = ("auto", "reference", "triton")

_ENV_GLOBAL = "HRRKIT_IMPL"


class FusedUnavailableError(RuntimeError):
    """The fused (Triton) implementation was requested explicitly but cannot run."""

    def __init__(self, op: str, reasons: Sequence[str]):
        self.op = op
        self.reasons = list(reasons)
        bullet = "\n  - ".join(self.reasons)
        super().__init__(
            f"hrrkit op '{op}': the fused Triton implementation cannot run here:\n  - {bullet}\n"
            f"Use impl='reference' (or impl='auto') to run the reference PyTorch implementation."
        )


@dataclass(frozen=True)
class OpSpec:
    """What the dispatcher knows about one op.

    Attributes:
        name: short op name, also the suffix of its environment variable (upper-cased).
        reference: the reference PyTorch function (the specification).
        fused_module: dotted module that holds the fused entry point (imported lazily).
        fused_attr: the callable's name inside ``fused_module``.
        unsupported: ``f(*tensors) -> list[str]``, op-specific reasons the fused kernel cannot
            handle these inputs (dtype, rank, sizes). Device and Triton checks are shared.
        fused_dtypes: dtypes the fused kernel accepts.
        summary: one line for ``hrrkit env``.
    """

    name: str
    reference: Callable[..., Any]
    fused_module: str
    fused_attr: str
    unsupported: Callable[..., list[str]] = field(default=lambda *tensors: [])
    fused_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    summary: str = ""

    def load_fused(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.fused_module), self.fused_attr)


_REGISTRY: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Register an op with the dispatcher (idempotent for the same name)."""
    _REGISTRY[spec.name] = spec
    return spec


def registered_ops() -> dict[str, OpSpec]:
    """All registered ops by name (importing :mod:`hrrkit.ops` registers the built-in ones)."""
    return dict(_REGISTRY)


def get_op(name: str) -> OpSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown hrrkit op '{name}'; registered: {sorted(_REGISTRY)}") from None


@lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """Why Triton cannot be imported, or ``None`` when it can."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (wheels exist for Linux x86-64: pip install triton)"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken install must not break the reference path
        return f"Triton is installed but fails to import: {type(exc).__name__}: {exc}"
    return None


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set (fused kernels then run on CPU tensors, slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def device_reasons(device: torch.device) -> list[str]:
    """Reasons, shared by all ops, that the fused path cannot run on ``device``."""
    reasons: list[str] = []
    err = triton_import_error()
    if err is not None:
        reasons.append(err)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            reasons.append("CUDA tensors given but torch.cuda is not available")
    elif device.type == "cpu":
        if not interpreter_enabled():
            reasons.append(
                "the tensors are on the CPU and Triton kernels run on CPU only under the "
                "interpreter: set TRITON_INTERPRET=1 before hrrkit.kernels is imported (slow; "
                "for tests), or move the tensors to a CUDA device"
            )
    else:
        reasons.append(f"device type '{device.type}' is not supported by the Triton kernels (cuda only)")
    return reasons


def fused_reasons(spec: OpSpec, tensors: Sequence[torch.Tensor]) -> list[str]:
    """Every reason the fused implementation of ``spec`` cannot run on ``tensors``."""
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    if not tensors:
        return ["no tensor arguments"]
    devices = {t.device for t in tensors}
    reasons: list[str] = []
    if len(devices) > 1:
        reasons.append(f"tensors are on different devices: {sorted(map(str, devices))}")
    reasons += device_reasons(tensors[0].device)
    for t in tensors:
        if t.is_floating_point() and t.dtype not in spec.fused_dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in spec.fused_dtypes)
            reasons.append(f"dtype {str(t.dtype).replace('torch.', '')} not supported (supports {names})")
            break
    reasons += spec.unsupported(*tensors)
    return reasons


def _env_impl(op: str) -> str:
    for var in (f"{_ENV_GLOBAL}_{op.upper()}", _ENV_GLOBAL):
        value = os.environ.get(var)
        if value:
            value = value.strip().lower()
            if value not in IMPLS:
                raise ValueError(f"environment variable {var}={value!r}: expected one of {IMPLS}")
            if value != "auto":
                return value
    return "auto"


def resolve_impl(op: str, impl: str, tensors: Sequence[torch.Tensor]) -> str:
    """Decide which implementation of ``op`` runs: ``"reference"`` or ``"triton"``.

    Raises:
        ValueError: ``impl`` is not one of ``auto``, ``reference``, ``triton``.
        FusedUnavailableError: the fused path was asked for (argument or environment) and
            cannot run; the message lists every reason.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} for op '{op}': expected one of {IMPLS}")
    if impl == "reference":
        return "reference"
    if impl == "auto" and torch.compiler.is_compiling():
        return "reference"
    spec = get_op(op)
    requested = impl if impl != "auto" else _env_impl(op)
    if requested == "reference":
        return "reference"
    reasons = fused_reasons(spec, tensors)
    if requested == "triton":
        if reasons:
            raise FusedUnavailableError(op, reasons)
        return "triton"
    # auto: the fused kernel only on CUDA; on CPU the interpreter is a correctness tool, never a default
    on_cuda = all(t.device.type == "cuda" for t in tensors if isinstance(t, torch.Tensor))
    return "triton" if on_cuda and not reasons else "reference"


def dispatch(op: str, impl: str, tensors: Sequence[torch.Tensor]) -> Callable[..., Any]:
    """The callable that implements ``op`` for these inputs (see :func:`resolve_impl`)."""
    spec = get_op(op)
    if resolve_impl(op, impl, tensors) == "reference":
        return spec.reference
    return spec.load_fused()


def op_table(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> list[dict[str, str]]:
    """Which ops exist and which implementation ``impl="auto"`` picks for each on ``device``.

    Returns one dict per op with keys ``op``, ``auto`` (``triton`` or ``reference``), ``env``
    (the environment override in force, if any) and ``why`` (reasons the fused path is not used).
    """
    device = torch.device(device)
    rows = []
    for name, spec in sorted(_REGISTRY.items()):
        env = _env_impl(name)
        reasons = device_reasons(device)
        if device.type != "cuda" and not reasons:
            reasons.append("impl='auto' uses fused kernels on CUDA only (impl='triton' runs them interpreted)")
        if dtype not in spec.fused_dtypes:
            reasons.append(f"dtype {dtype} not supported")
        if env == "reference":
            auto, why = "reference", f"forced by environment ({_ENV_GLOBAL}[_{name.upper()}]=reference)"
        else:
            auto = "reference" if reasons else "triton"
            why = "; ".join(reasons)
            if env == "triton" and reasons:
                auto = "error"
        rows.append({"op": name, "auto": auto, "env": env, "why": why, "summary": spec.summary})
    return rows
