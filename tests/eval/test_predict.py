"""Scoring files: pixel-budget batching, per-image notes, the unsure band, evidence maps (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.eval.evidence import render_evidence, save_evidence
from hrrkit.eval.metrics import calibrate_unsure_band, unsure_summary
from hrrkit.eval.predict import DETECTION_FIELD_DOCS, DETECTION_FIELDS, detect_files, write_detections
from hrrkit.models import HRRDetector, preset_config
from hrrkit.models.config import ConfigError, DetectorConfig


def _images(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _detector(preset="hrr", **changes):
    torch.manual_seed(0)
    det = HRRDetector(preset_config(preset).replace(**{"backbone.name": "compact_cnn",
                                                       "backbone.options": {"width": 4, "depth": 2}, **changes}))
    with torch.no_grad():  # a non-trivial head, so scores and maps differ between images
        for p in det.head.parameters():
            p.normal_(0, 0.5)
    return det.eval()


def test_pixel_budget_bounds_every_forward_pass_and_keeps_the_scores(tmp_path, monkeypatch):
    folder = _images(tmp_path, [(40, 30), (64, 64), (20, 90), (33, 17), (50, 50)])
    det = _detector(**{"input.eval_policy": "native"})
    calls = []
    original = det.predict

    def spy(images, **kwargs):
        calls.append(sum(det.view_pixels(*img.size) for img in images))
        return original(images, **kwargs)

    monkeypatch.setattr(det, "predict", spy)
    budget = 2 * det.view_pixels(64, 64)
    batched = detect_files(det, [folder], pixel_budget=budget)
    assert len(calls) > 1 and all(c <= budget for c in calls)
    calls.clear()
    one_by_one = detect_files(det, [folder], batch_size=1)
    assert len(calls) == 5
    for a, b in zip(batched.rows, one_by_one.rows):
        assert a["path"] == b["path"] and a["score"] == pytest.approx(b["score"], abs=1e-5)
    alone = detect_files(det, [folder], pixel_budget=1)  # every image over the budget goes alone
    assert [r["path"] for r in alone.rows] == [r["path"] for r in batched.rows]


def test_view_pixels_counts_every_view_at_every_scale():
    native = _detector(**{"input.eval_policy": "native"})
    assert native.view_pixels(40, 20) == 20 * 10 + 40 * 20 + 80 * 40
    crop = _detector(**{"input.eval_policy": "center_crop", "input.crop_size": 16})
    assert crop.view_pixels(1000, 1000) == 8 * 8 + 16 * 16 + 32 * 32
    tiles = _detector(**{"input.eval_policy": "tiles", "input.crop_size": 16, "input.max_tiles": None})
    assert tiles.view_pixels(40, 20) == 3 * 2 * (8 * 8 + 16 * 16 + 32 * 32)


def test_collapsed_scales_and_tiny_images_get_a_note(tmp_path, capsys):
    folder = _images(tmp_path, [(1, 1), (2500, 40), (48, 40)])
    det = _detector(**{"input.eval_policy": "native"})
    rows = detect_files(det, [folder]).rows
    tiny, wide, normal = rows
    assert "1x1 image" in tiny["note"] and "scales 0.5, 1, 2 give the same 4x4 view" in tiny["note"]
    assert "scales 1, 2 give the same 2048x33 view (the 2048-px cap" in wide["note"]
    assert normal["note"] == ""
    write_detections(rows, tmp_path / "out.csv")
    header = (tmp_path / "out.csv").read_text().splitlines()[0]
    assert header == ",".join(DETECTION_FIELDS) and set(DETECTION_FIELDS) <= set(DETECTION_FIELD_DOCS)


def test_unsure_band_calibration_and_labels():
    rng = np.random.default_rng(0)
    reals, fakes = rng.beta(2, 5, 400), rng.beta(5, 2, 400)
    band = calibrate_unsure_band(reals, fakes, target_fpr=0.05, target_fnr=0.05)
    assert band.low < band.high
    assert (reals >= band.high).mean() <= 0.05 and (fakes < band.low).mean() <= 0.05
    assert band.achieved_fpr == pytest.approx((reals >= band.high).mean())
    assert 0 < band.unsure_real < 1 and 0 < band.unsure_fake < 1
    # well separated scores: the band is empty, one threshold remains
    separated = calibrate_unsure_band(rng.uniform(0, 0.3, 50), rng.uniform(0.7, 1, 50), 0.05, 0.05)
    assert separated.low == separated.high
    summary = unsure_summary(np.r_[np.zeros(400), np.ones(400)], np.r_[reals, fakes], (band.low, band.high))
    decided = ~((np.r_[reals, fakes] >= band.low) & (np.r_[reals, fakes] < band.high))
    errors = (reals >= band.high).sum() + (fakes < band.low).sum()
    assert summary["fpr"] <= 0.05 and summary["fnr"] <= 0.05
    assert summary["decided_accuracy"] == pytest.approx(1 - errors / decided.sum())
    assert summary["unsure_fraction"] == pytest.approx(1 - decided.mean())
    det = _detector()
    det.config.unsure = (0.3, 0.7)
    assert [det.label_for(s) for s in (0.1, 0.3, 0.5, 0.7, 0.9)] == ["real", "unsure", "unsure", "generated",
                                                                     "generated"]
    assert det.label_for(0.5, threshold=0.4) == "generated"  # an explicit threshold wins
    data = DetectorConfig(unsure=(0.2, 0.8)).to_dict()
    assert DetectorConfig.from_dict(data).unsure == (0.2, 0.8)
    with pytest.raises(ConfigError, match="unsure"):
        DetectorConfig.from_dict({**data, "unsure": [0.9, 0.1]})


@pytest.mark.parametrize("policy", ["native", "tiles"])
def test_evidence_maps_add_up_to_the_logit_for_a_linear_pooled_detector(policy):
    # dire: one scale, global average pooling, linear head, no pixel-residual moments: the logit is
    # linear in the feature maps, so gradient x activation summed over locations is exact
    det = _detector("dire", **{"input.eval_policy": policy, "input.crop_size": 16, "input.max_tiles": None})
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (37, 29, 3), dtype=np.uint8)) for i in (1, 2)]
    preds = det.predict(images, with_maps=True)
    constant = det.head(torch.zeros(1, det.descriptor_dim)).item()
    for p in preds:
        logit = float(np.log(p["score"] / (1 - p["score"])))
        (m,) = p["maps"].values()
        assert float(m.sum()) == pytest.approx(logit - constant, rel=1e-3, abs=1e-4)
        assert p["canvas"].dtype == np.uint8 and p["canvas"].shape[2] == 3
    assert not np.allclose(preds[0]["maps"]["1"], 0)


def test_evidence_figure_and_arrays(tmp_path):
    det = _detector(**{"input.eval_policy": "native"})
    pred = det.predict([Image.fromarray(np.full((30, 40, 3), 128, np.uint8))], with_maps=True)[0]
    figure = render_evidence(pred, "x.png")
    assert figure.mode == "RGB" and figure.width > 4 * 150
    png, npz = save_evidence(pred, tmp_path, "x.png")
    assert Image.open(png).size == figure.size
    with np.load(npz) as arrays:
        assert set(arrays.files) >= {"canvas", "score", "map_0.5", "map_1", "map_2", "scale_1"}
        np.testing.assert_array_equal(arrays["map_1"], pred["maps"]["1"])
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left


def test_evidence_overlays_stay_visible_beside_one_extreme_cell():
    """The colour scale saturates at a high percentile, so one extreme cell does not leave every
    other cell nearly clear (the overlays used to be faint at page width)."""
    rng = np.random.default_rng(0)
    maps = {s: rng.standard_normal((12, 16)).astype(np.float32) * 0.01 for s in ("0.5", "1")}
    maps["1"][3, 4] = 1.0
    pred = {"canvas": np.full((96, 128, 3), 128, np.uint8), "maps": maps, "score": 0.7, "label": "generated",
            "scale_scores": {"0.5": 0.6, "1": 0.7}}
    figure = np.asarray(render_evidence(pred), dtype=np.int16)
    panel = 256  # the panels' longer side
    x0, y0 = 8 + 2 * (panel + 8), 22  # the scale-1 panel (after the image and scale 0.5)
    overlay = figure[y0 : y0 + 192, x0 : x0 + panel]
    chroma = overlay.max(axis=2) - overlay.min(axis=2)  # 0 on the grey image
    assert np.median(chroma) > 8, np.median(chroma)  # about 0 when the extreme cell set the scale
