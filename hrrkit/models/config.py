"""``DetectorConfig``: everything needed to rebuild a detector and reproduce its numbers.

The config is data (timm's habit): input policy, scales, line enhancement, retrospector, backbone,
style statistics, head, loss weights and decision threshold. It round-trips through dict, JSON and
YAML; unknown or ill-typed fields give an error that names the field (``detector.head.num_basis``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrrkit.data.io import DEFAULT_MAX_PIXELS


class ConfigError(ValueError):
    """A config field is unknown, missing or has a bad value; the message names it."""


def _choose(section: str, name: str, value: Any, choices) -> None:
    """Raise :class:`ConfigError` naming ``section.name`` when ``value`` is not one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{section}.{name}={value!r}: choose one of {choices}")


@dataclass
class InputConfig:
    """How files become tensors.

    ``policy``: ``center_crop`` | ``random_crop`` (train) | ``tiles`` | ``native`` (see
    ``hrrkit.data.dataset``); ``crop_size`` in pixels; ``max_tiles`` per image for ``tiles``;
    ``reencode`` e.g. ``"jpeg:95"`` applied to real and fake alike (``None`` = off);
    ``augment`` preset (``none`` | ``cnndetection``) for training; ``max_pixels`` decompression limit.
    """

    policy: str = "center_crop"
    eval_policy: str = "center_crop"
    crop_size: int = 64
    max_tiles: int | None = 16
    reencode: str | None = None
    augment: str = "none"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        from hrrkit.data.dataset import AUGMENTATION_PRESETS, INPUT_POLICIES, ReEncode

        _choose("input", "policy", self.policy, INPUT_POLICIES)
        _choose("input", "eval_policy", self.eval_policy, INPUT_POLICIES)
        _choose("input", "augment", self.augment, AUGMENTATION_PRESETS)
        if self.crop_size < 1:
            raise ConfigError(f"input.crop_size={self.crop_size}: must be >= 1")
        if self.max_tiles is not None and self.max_tiles < 1:
            raise ConfigError(f"input.max_tiles={self.max_tiles}: must be >= 1 or null")
        try:
            ReEncode.parse(self.reencode)
        except ValueError as exc:
            raise ConfigError(f"input.reencode={self.reencode!r}: {exc}") from None

    def dataset(self, samples, *, train: bool = False, augment: Any = None, seed: int = 0, strict: bool = False,
                pair_keys: Any = None):
        """The :class:`~hrrkit.data.dataset.ImageDataset` of ``samples`` under this input policy: ``train``
        uses ``policy`` and ``augment``, otherwise ``eval_policy`` and no augmentation; ``augment``
        overrides the augmentation (e.g. a perturbation for robustness); ``reencode``, ``crop_size``,
        ``max_tiles`` and ``max_pixels`` always apply; ``pair_keys`` gives a pair's members one crop and
        augmentation (:class:`~hrrkit.data.dataset.ImageDataset`)."""
        from hrrkit.data.dataset import ImageDataset

        if augment is None:
            augment = self.augment if train else "none"
        return ImageDataset(samples, input_policy=self.policy if train else self.eval_policy,
                            crop_size=self.crop_size, max_tiles=self.max_tiles, augment=augment,
                            reencode=self.reencode, strict=strict, seed=seed,
                            load_options={"max_pixels": self.max_pixels}, pair_keys=pair_keys)


@dataclass
class RescaleConfig:
    """NoisyRescale: scale factors (1.0 = native), Gaussian dither std in [-1, 1] units."""

    enabled: bool = True
    scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    dither_std: float = 0.01
    dither_in_eval: bool = False
    fusion: str = "mean"

    def __post_init__(self) -> None:
        from hrrkit.nn.msr import FUSIONS

        _choose("rescale", "fusion", self.fusion, FUSIONS)
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ConfigError(f"rescale.scales={list(self.scales)}: give one or more positive factors")
        if not self.dither_std >= 0:
            raise ConfigError(f"rescale.dither_std={self.dither_std}: must be >= 0")

    def build(self):
        """The :class:`~hrrkit.nn.msr.NoisyRescale` stage (whole images; the floor of 4 px keeps the
        0.5 scale of a 28-px image usable); ``enabled=False``: scale 1 only, no dither."""
        from hrrkit.nn.msr import NoisyRescale

        if not self.enabled:
            return NoisyRescale.single_scale()
        return NoisyRescale(self.scales, self.dither_std, output="full", min_side=4, dither_in_eval=self.dither_in_eval)


@dataclass
class LineEnhancementConfig:
    """Unsharp mask (σ₁ = ``sigma_sharpen`` px, ``amount``) → Gaussian-derivative edges (σ₂ = ``sigma_edge`` px)
    → x + ``beta``·edges."""

    enabled: bool = True
    sigma_sharpen: float = 1.0
    amount: float = 1.0
    sigma_edge: float = 1.0
    beta: float = 0.5

    def build(self):
        """The :class:`~hrrkit.nn.msr.LineEnhancement` stage, or ``None`` when disabled."""
        from hrrkit.nn.msr import LineEnhancement

        if not self.enabled:
            return None
        try:
            return LineEnhancement(self.sigma_sharpen, self.amount, self.sigma_edge, self.beta)
        except ValueError as exc:
            raise ConfigError(f"detector.line: {exc}") from None


@dataclass
class RetrospectorConfig:
    """The reconstruction step. ``kind``: a name from :mod:`hrrkit.retrospect.registry` — ``none`` (the
    image itself), ``identity`` (zero residual — an ablation), ``blur`` (a Gaussian blur stand-in,
    σ = ``blur_sigma`` px; cheap, no weights), ``autoencoder``, ``latent`` or ``pixel_ddim``
    (diffusers weights from the local ``path``; ``options`` go to the retrospector's ``from_pretrained``). ``input``: what the backbone sees:
    ``residual`` |x̃ − x̂|, ``image`` x̃, or ``both`` (6 channels). The default is hrrkit's shipped diffusion
    model (``path: "hrrkit:real-photo-unet"``, a pixel UNet trained on real photographs, DDIM round trip,
    NFE 2; :mod:`hrrkit.retrospect.shipped`); ``blur`` is an ablation."""

    kind: str = "pixel_ddim"
    path: str | None = "hrrkit:real-photo-unet"
    options: dict[str, Any] = field(default_factory=dict)
    blur_sigma: float = 1.0
    input: str = "residual"

    def __post_init__(self) -> None:
        from hrrkit.nn.msr import BACKBONE_INPUTS
        from hrrkit.retrospect.registry import retrospector_kinds

        _choose("retrospector", "kind", self.kind, retrospector_kinds())
        _choose("retrospector", "input", self.input, BACKBONE_INPUTS)
        if not self.blur_sigma > 0:
            raise ConfigError(f"retrospector.blur_sigma={self.blur_sigma}: must be > 0")


@dataclass
class BackboneConfig:
    """A backbone from ``hrrkit.models.backbones`` (``compact_cnn``, ``timm:<name>``, ``torchvision:<name>``);
    ``options`` go to its factory; ``pretrained_path`` is a local weights file."""

    name: str = "compact_cnn"
    options: dict[str, Any] = field(default_factory=lambda: {"width": 16, "depth": 3})
    pretrained_path: str | None = None


@dataclass
class StyleConfig:
    """StyleStatistics over grid ``levels``; ``descriptor``: ``both`` (style + style-normalised
    content), ``content`` or ``style``; ``pixel_residual_stats`` appends the multi-level moments of
    the pixel residual; ``enabled=False`` pools plain channel means instead."""

    enabled: bool = True
    levels: tuple[int, ...] = (1, 2, 4)
    descriptor: str = "both"
    pixel_residual_stats: bool = True

    def __post_init__(self) -> None:
        from hrrkit.nn.msr import DESCRIPTORS

        _choose("style", "descriptor", self.descriptor, DESCRIPTORS)

    def build(self):
        """The :class:`~hrrkit.nn.msr.StyleStatistics` stage, or ``None`` (global average pooling)."""
        from hrrkit.nn.msr import StyleStatistics

        if not self.enabled:
            return None
        try:
            return StyleStatistics(self.levels, self.descriptor)
        except ValueError as exc:
            raise ConfigError(f"detector.style: {exc}") from None


@dataclass
class HeadConfig:
    """``additive`` (AFR: SparseAdditiveRefinement) or ``linear`` (batch-normalised linear logit, as a
    DIRE-style baseline). ``basis``/``num_basis``/``normalization``: the additive basis (see
    ``docs/afr.md``); ``penalty_mode``: ``proximal`` (exact zeros through a group soft-threshold after
    each optimiser step) or ``loss`` (penalty added to the loss)."""

    kind: str = "additive"
    basis: str = "bspline"
    num_basis: int = 8
    normalization: str = "tanh"
    penalty_mode: str = "proximal"

    def __post_init__(self) -> None:
        from hrrkit.nn.additive import NORMALIZATIONS
        from hrrkit.nn.heads import HEADS, PENALTY_MODES
        from hrrkit.ops.additive import BASES

        _choose("head", "kind", self.kind, HEADS)
        _choose("head", "basis", self.basis, BASES)
        _choose("head", "normalization", self.normalization, NORMALIZATIONS)
        _choose("head", "penalty_mode", self.penalty_mode, PENALTY_MODES)

    def build(self, in_features: int, loss: LossConfig):
        """The head (:mod:`hrrkit.nn.heads`) on ``in_features``-dimensional descriptors, with ``loss``'s weights."""
        from hrrkit.nn.heads import HEADS

        return HEADS[self.kind].from_config(in_features, self, loss)


@dataclass
class LossConfig:
    """loss = bce·BCE + correntropy·ℓ_σ + scale_kl·KL + sparsity·Σ_j τ_j‖β_j‖₂."""

    bce: float = 1.0
    correntropy: float = 0.5
    correntropy_sigma: float = 1.0
    scale_kl: float = 0.1
    sparsity: float = 1e-4


@dataclass
class DetectorConfig:
    """The whole detector. ``name`` labels it in reports (``hrr``, ``dire``, ``hrr_no_msr``, ...)."""

    name: str = "hrr"
    input: InputConfig = field(default_factory=InputConfig)
    rescale: RescaleConfig = field(default_factory=RescaleConfig)
    line: LineEnhancementConfig = field(default_factory=LineEnhancementConfig)
    retrospector: RetrospectorConfig = field(default_factory=RetrospectorConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    threshold: float = 0.5
    unsure: tuple[float, ...] | None = None
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.unsure is not None:
            if len(self.unsure) != 2 or not 0.0 <= self.unsure[0] <= self.unsure[1] <= 1.0:
                raise ConfigError(f"unsure={list(self.unsure)}: give [low, high] with 0 <= low <= high <= 1, or null")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "detector") -> DetectorConfig:
        head = data.get("head") if isinstance(data, dict) else None
        if isinstance(head, dict) and "fuse" in head:  # configs written before fusion moved to rescale
            data = {**data, "head": {k: v for k, v in head.items() if k != "fuse"},
                    "rescale": {**data.get("rescale", {}), "fusion": head["fuse"]}}
        return from_plain(cls, data, where)

    def replace(self, **changes: Any) -> DetectorConfig:
        """A copy with dotted-path changes, e.g. ``replace(**{"head.kind": "linear"})``."""
        data = self.to_dict()
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise ConfigError(f"detector.{dotted}: no such section '{p}'")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"detector.{dotted}: no such field")
            node[leaf] = value
        return DetectorConfig.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        return save_config_file(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DetectorConfig:
        return cls.from_dict(load_config_file(path), where=str(path))


# ----------------------------------------------------------------------------- field reference

# One line per field: what it means (units, choices). docs/config.md is generated from this and the
# dataclasses (defaults, types); tests/models/test_config_reference.py keeps both in step.
FIELD_DOCS: dict[str, str] = {
    "name": "Label of the detector in reports (the preset name by default).",
    "input.policy": "How training files become tensors: `random_crop`, `center_crop`, `tiles` or `native` (whole image).",
    "input.eval_policy": "The same for validation, evaluation and `predict`/`detect` (no randomness).",
    "input.crop_size": "Side of the square crop or tile, in pixels; smaller images are reflect-padded, never upscaled.",
    "input.max_tiles": "Most tiles per image under `tiles` (evenly spread); `null` = all.",
    "input.reencode": "Format equalisation applied to real and fake alike, e.g. `jpeg:95`, `webp:90`, `png`; `null` = off.",
    "input.augment": "Training augmentation preset: `none`, `flip`, `cnndetection` (blur + JPEG, p = 0.5), `cnndetection-0.1`, `cnnspot` (= `cnndetection`), `jpeg-chain` (up to 3 successive JPEG compressions, p = 0.5) or `cnnspot+jpeg-chain` (docs/data.md).",
    "input.max_pixels": "Decompression-bomb limit: images with more pixels are refused with a typed error.",
    "rescale.enabled": "NoisyRescale on: several scales per image; off = scale 1 only.",
    "rescale.scales": "Scale factors (1 = native size); each gives one view and one per-scale score.",
    "rescale.dither_std": "Std of the Gaussian dither added after resizing, in [-1, 1] image units (0.01 ≈ 1.3 grey levels).",
    "rescale.dither_in_eval": "Also dither at evaluation (off: evaluation is deterministic).",
    "rescale.fusion": "How per-scale descriptors are fused into one: `mean` or `learned` weights (softmax).",
    "line.enabled": "LineEnhancement on: x + β·edges of a sharpened copy.",
    "line.sigma_sharpen": "σ of the unsharp-mask blur, in pixels.",
    "line.amount": "Unsharp-mask strength (x + amount·(x − blur)).",
    "line.sigma_edge": "σ of the Gaussian-derivative edge operator, in pixels.",
    "line.beta": "Weight β of the edge map added back to the image.",
    "retrospector.kind": "Reconstruction: `pixel_ddim`, `latent`, `autoencoder` (diffusion weights from `path`), "
                         "`blur` (weight-free ablation), `identity` (zero residual) or `none` (the image itself).",
    "retrospector.path": "`hrrkit:real-photo-unet` (shipped, trained on real photographs), or a local diffusers "
                         "folder or `.safetensors` file (SD, ADM); relative to the run config.",
    "retrospector.options": "Keyword arguments for the retrospector's `from_pretrained` (steps, timestep, dtype, ...).",
    "retrospector.blur_sigma": "σ of the `blur` retrospector, in pixels.",
    "retrospector.input": "What the backbone sees: `residual` |x̃ − x̂|, `image` x̃, or `both` (6 channels).",
    "backbone.name": "`compact_cnn` (built in), `efficientnet_lite0`/`efficientnet_lite1`/`efficientnet_lite2` (ImageNet weights, the `pretrained` extra), `dinov2_vits14` (self-supervised DINOv2 ViT-S/14, the `pretrained` extra), `npr_cnn` (NPR input + compact CNN), `timm:<model>` or `torchvision:<model>` (optional packages); see docs/backbones.md.",
    "backbone.options": "Keyword arguments of the backbone factory (`compact_cnn`/`npr_cnn`: `width`, `depth`; `efficientnet_lite0/1/2`: `pretrained`, `out_index`, `frozen`, `drop_path_rate`, `input_offset`, `feature_cache`; `dinov2_vits14`: `pretrained`, `out_block`, `frozen`, `size_policy` (`crop`/`pad`), `input_mean`/`input_std` (the normalisation of the weights, ImageNet's by default: write them out so the config records it), `input_offset`, `feature_cache`); replaced as a whole when set.",
    "backbone.pretrained_path": "Local weights file for the backbone (safetensors, or a state dict read with "
                                "`weights_only=True`); never downloaded.",
    "style.enabled": "StyleStatistics on (multi-level moments); off = global average pooling.",
    "style.levels": "Grid levels of the moments (1 = whole map, 2 = 2×2 cells, ...).",
    "style.descriptor": "`both` (style + style-normalised content), `content` or `style`.",
    "style.pixel_residual_stats": "Append the multi-level moments of the pixel residual to each descriptor.",
    "head.kind": "`additive` (AFR, SparseAdditiveRefinement) or `linear` (batch-normalised linear logit).",
    "head.basis": "Additive basis: `bspline` (cubic B-spline) or `rbf` (Gaussian).",
    "head.num_basis": "Basis functions per feature dimension (K).",
    "head.normalization": "How features are mapped into the basis range: `tanh`, `standardize` (running "
                          "statistics) or `none` (see docs/afr.md).",
    "head.penalty_mode": "`proximal` (exact zeros via a group soft-threshold after each step) or `loss` (penalty in the loss).",
    "loss.bce": "Weight of the binary cross-entropy.",
    "loss.correntropy": "Weight of the correntropy-induced loss ℓ_σ.",
    "loss.correntropy_sigma": "σ of the correntropy loss, in logit units.",
    "loss.scale_kl": "Weight λ_KL of the scale-consistency KL between per-scale predictions.",
    "loss.sparsity": "Weight λ_S of the group-sparsity penalty Σ_j τ_j‖β_j‖₂.",
    "threshold": "Decision threshold on the score (probability of generated); `hrrkit eval --calibrate-fpr "
                 "--save-threshold` sets it.",
    "unsure": "Abstain band `[low, high]` on the score: `real` below low, `generated` at or above high, `unsure` "
              "between; `hrrkit eval --calibrate-fpr --calibrate-fnr --save-threshold` sets it; `null` = one threshold.",
    "calibration": "How `threshold` (and `unsure`) were calibrated (target and achieved FPR/FNR, numbers of "
                   "images, data); `null` = not calibrated.",
}


def field_rows(cls: type, docs: dict[str, str], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted name, type, default, meaning)`` for every leaf field of a config dataclass, in
    declaration order; nested dataclasses are expanded. A field missing from ``docs`` raises."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_rows(hints[f.name], docs, prefix=f"{name}.")
            continue
        if name not in docs:
            raise KeyError(f"{cls.__name__}.{f.name}: no entry {name!r} in the field reference")
        shown = "required" if default is dataclasses.MISSING else json.dumps(to_plain(default), ensure_ascii=False)
        type_name = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        rows.append((name, type_name, shown, docs[name]))
    return rows


# ----------------------------------------------------------------------------- (de)serialisation


def to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def _check_value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_plain(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_check_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_plain(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    kwargs = {name: _check_value(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a section's own check names "section.field"; put the file/prefix first
        head, _, tail = where.rpartition(".")
        raise ConfigError(f"{head if head and str(exc).startswith(tail + '.') else where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def save_config_file(data: dict[str, Any], path: str | os.PathLike) -> Path:
    from hrrkit.utils.atomic import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return atomic_write_json(path, data)
