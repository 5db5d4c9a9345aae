"""The retrospector registry: every kind a config's ``retrospector.kind`` or ``hrrkit retrospect
run --kind`` can name, read by :func:`build_retrospector`, the config check and the CLI.

Built in: ``none`` (no retrospection: the backbone sees the image), ``identity`` (zero residual),
``blur`` (weight-free stand-in), and the diffusers-backed ``pixel_ddim`` (DIRE), ``latent`` and
``autoencoder``, whose modules (and diffusers) are imported only when one is built.

Register another kind with :func:`register_retrospector`; its ``factory(config, device)`` receives
the ``RetrospectorConfig`` (read by attribute: ``path``, ``options``, ``blur_sigma``, ...) and returns a
callable ``(B, 3, H, W) in [-1, 1] → reconstruction`` with a ``cost()`` returning a
:class:`~hrrkit.retrospect.base.RetrospectionCost`, or ``None`` for no retrospection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Factory = Callable[[Any, "torch.device | str | None"], Any]


@dataclass(frozen=True)
class RetrospectorKind:
    """One registered kind.

    Attributes:
        name: the ``retrospector.kind`` value.
        description: one line for listings and docs.
        factory: ``factory(config, device) -> retrospector | None``.
        needs_path: the kind loads weights from ``config.path`` (a local diffusers folder or file).
        cli_alias: another name ``hrrkit retrospect run --kind`` accepts (e.g. ``pixel``).
        cls: ``"module:Class"`` of a diffusers-backed retrospector (imported on demand), for the CLI
            and the cache; ``None`` for the weight-free kinds.
    """

    name: str
    description: str
    factory: Factory
    needs_path: bool = False
    cli_alias: str | None = None
    cls: str | None = None

    def load_class(self) -> type:
        if self.cls is None:
            raise ValueError(f"retrospector kind {self.name!r} has no weights-backed class")
        module, attr = self.cls.split(":")
        return getattr(importlib.import_module(module), attr)


_KINDS: dict[str, RetrospectorKind] = {}


def register_retrospector(kind: RetrospectorKind) -> RetrospectorKind:
    """Add ``kind`` to the registry; a name registered twice raises ``ValueError``."""
    if kind.name in _KINDS:
        raise ValueError(f"register_retrospector: kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def retrospector_kinds() -> tuple[str, ...]:
    """The registered ``retrospector.kind`` names, in registration order."""
    return tuple(_KINDS)


def retrospector_kind(name: str) -> RetrospectorKind:
    """The registered kind ``name`` (a CLI alias such as ``pixel`` also works)."""
    if name in _KINDS:
        return _KINDS[name]
    for kind in _KINDS.values():
        if kind.cli_alias == name:
            return kind
    raise ValueError(f"retrospector.kind={name!r}: choose one of {list(_KINDS)}")


def weights_backed_kinds() -> dict[str, RetrospectorKind]:
    """``{CLI name: kind}`` of the kinds that load diffusion weights (what ``hrrkit retrospect run`` caches)."""
    return {(k.cli_alias or k.name): k for k in _KINDS.values() if k.cls is not None}


def build_retrospector(config: Any, device: torch.device | str | None = None):
    """The retrospector a ``RetrospectorConfig`` names (``None`` for ``kind="none"``).

    Raises ``ValueError`` naming the field for an unknown kind or a missing ``path``."""
    kind = retrospector_kind(config.kind)
    if kind.needs_path and not config.path:
        raise ValueError(f"retrospector.path: required for kind={kind.name!r} (a local diffusers folder or "
                         ".safetensors file)")
    return kind.factory(config, device)


def _weights_factory(kind_name: str) -> Factory:
    def factory(config: Any, device):
        return _KINDS[kind_name].load_class().from_pretrained(config.path, device=device, **config.options)

    return factory


def _blur(config: Any, device):
    from hrrkit.retrospect.simple import BlurRetrospector

    return BlurRetrospector(config.blur_sigma)


def _identity(config: Any, device):
    from hrrkit.retrospect.simple import IdentityRetrospector

    return IdentityRetrospector()


register_retrospector(RetrospectorKind("none", "no retrospection: the backbone sees the image itself",
                                       lambda config, device: None))
register_retrospector(RetrospectorKind("identity", "zero residual (an ablation of the retrospection step)", _identity))
register_retrospector(RetrospectorKind("blur", "weight-free stand-in: a Gaussian blur of σ = blur_sigma px", _blur))
register_retrospector(RetrospectorKind(
    "autoencoder", "VAE encode/decode only (AEROBLADE-like, NFE 0)", _weights_factory("autoencoder"), needs_path=True,
    cls="hrrkit.retrospect.autoencoder:AutoencoderRetrospector"))
register_retrospector(RetrospectorKind(
    "latent", "VAE → one-step noising or DDIM inversion → conditional UNet → VAE", _weights_factory("latent"),
    needs_path=True, cls="hrrkit.retrospect.latent:LatentRetrospector"))
register_retrospector(RetrospectorKind(
    "pixel_ddim", "DIRE: DDIM inversion + sampling with a pixel UNet", _weights_factory("pixel_ddim"),
    needs_path=True, cli_alias="pixel", cls="hrrkit.retrospect.pixel_ddim:PixelDDIMRetrospector"))


def retrospector_label(config: Any) -> str:
    """One line naming the retrospector a ``RetrospectorConfig`` builds, for reports and ``hrrkit detect``:
    ``"pixel_ddim (hrrkit:real-photo-unet)"``, ``"blur σ=1 px (ablation, no diffusion model)"``, ..."""
    kind = config.kind
    if kind == "blur":
        return f"blur σ={config.blur_sigma:g} px (ablation, no diffusion model)"
    if kind == "none":
        return "none (the backbone sees the image itself)"
    if kind == "identity":
        return "identity (ablation, zero residual)"
    options = ", ".join(f"{k}={v}" for k, v in sorted((config.options or {}).items()))
    return f"{kind} ({config.path}{', ' + options if options else ''})"
