"""The default detector shipped in the package (hrrkit:default): loads offline by name, is the hrr_dino
recipe with a calibrated decision, carries its model card and test record, and scores images."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from hrrkit.cli import main
from hrrkit.models.checkpoint import packaged_weights
from hrrkit.models.detector import HRRDetector
from hrrkit.models.hub import DEFAULT_DETECTOR, shipped_detectors, shipped_folder
from hrrkit.models.presets import preset_config


@pytest.fixture(scope="module")
def default() -> HRRDetector:
    return HRRDetector.from_pretrained(DEFAULT_DETECTOR)


def test_it_ships_and_is_the_hrr_dino_recipe_with_a_calibrated_decision(default):
    assert DEFAULT_DETECTOR in shipped_detectors()
    recipe = preset_config("hrr_dino")
    shipped = default.config
    assert shipped.replace(threshold=recipe.threshold, unsure=None, calibration=None) == recipe
    low, high = shipped.unsure
    assert 0 < low <= high == shipped.threshold < 1
    cal = shipped.calibration
    assert cal["target_fpr"] == 0.05 and cal["achieved_fpr"] <= 0.05 and cal["n_real"] >= 20


def test_only_the_head_ships_and_the_backbone_is_fingerprint_checked(default):
    folder = shipped_folder(DEFAULT_DETECTOR)
    stored = load_file(str(folder / "model.safetensors"))
    assert stored and all(k.startswith("head.") for k in stored)
    assert (folder / "model.safetensors").stat().st_size < 1 << 20
    recorded = json.loads((folder / "config.json").read_text())["packaged_weights"]
    assert recorded == packaged_weights(default) and "msr.backbone." in recorded


def test_the_card_states_the_recorded_test_figures():
    folder = shipped_folder(DEFAULT_DETECTOR)
    record = json.loads((folder / "record.json").read_text())
    card = (folder / "README.md").read_text()
    groups = record["test"]["groups"]
    assert {"all", "text-to-image", "edit", "video", "upscale"} <= set(groups)
    for name, g in groups.items():
        auc = g["roc_auc"]
        assert auc["low"] <= auc["value"] <= auc["high"]
        assert f"| {name} | {auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]" in card
    assert record["calibration"]["high"] == pytest.approx(json.loads((folder / "config.json").read_text())
                                                          ["config"]["threshold"])
    for heading in ("## Training data", "## Decision", "## Test figures", "## What it cannot see"):
        assert heading in card


def test_hrrkit_detect_scores_a_photo_with_no_model_and_about_prints_the_card(tmp_path, capsys):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photo = tmp_path / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(photo, quality=92)
    assert main(["detect", str(photo), "--no-progress"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out.splitlines()[0])
    assert row["label"] in {"real", "generated", "unsure"} and 0 <= row["score"] <= 1
    assert "detector hrr_dino" in captured.err and "1 scored" in captured.err
    assert main(["detect", "--about"]) == 0
    assert "# hrrkit:default" in capsys.readouterr().out
