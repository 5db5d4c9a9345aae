"""``hrrkit eval``: report numbers agree with scikit-learn; oracle labelled optimistic; threshold
calibration stored in the detector; robustness under perturbations."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from hrrkit.cli import main
from hrrkit.models.detector import load_detector


def _scores(folder):
    with open(folder / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows


def _sklearn_row(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.argmax(fnr - fpr <= 0))  # first ROC point past the FPR = FNR crossing
    t = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) - (fnr[i] - fpr[i])) if i else 0.0
    predicted = (s >= threshold).astype(int)
    thresholds = np.r_[np.inf, np.unique(s)]
    oracle = max(skm.accuracy_score(y, (s >= t_).astype(int)) for t_ in thresholds)
    return {
        "ap": skm.average_precision_score(y, s),
        "roc_auc": skm.roc_auc_score(y, s),
        "acc": skm.accuracy_score(y, predicted),
        "balanced_acc": skm.balanced_accuracy_score(y, predicted),
        "real_acc": skm.recall_score(y, predicted, pos_label=0),
        "fake_acc": skm.recall_score(y, predicted, pos_label=1),
        "acc_at_0_5": skm.accuracy_score(y, (s >= 0.5).astype(int)),
        "tpr_at_1pct_fpr": tpr[fpr <= 0.01].max(),
        "tpr_at_5pct_fpr": tpr[fpr <= 0.05].max(),
        "eer": fpr[i - 1] + t * (fpr[i] - fpr[i - 1]) if i else fpr[0],
        "oracle_acc": oracle,
    }


def test_eval_metrics_agree_with_scikit_learn_and_oracle_is_labelled(tmp_path, trained, capsys):
    out = tmp_path / "eval"
    threshold = 0.4
    assert main(["eval", str(trained["data"]), "--model", str(trained["model"]), "--split", "test",
                 "--out", str(out), "--oracle", "--threshold", str(threshold), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = _scores(out)
    assert len(rows) == report["n_images"] == len(list((trained["data"] / "test").rglob("*.png")))
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([float(r["score"]) for r in rows])
    gens = np.array([r["generator"] for r in rows])
    assert report["threshold"] == threshold and report["oracle_included"] is True

    expected_overall = _sklearn_row(y, s, threshold)
    for key, value in expected_overall.items():
        assert report["overall"][key] == pytest.approx(value, abs=1e-9), key
    per_gen = {}
    for gen in ("diff_b", "gan_a"):
        mask = (gens == gen) | (y == 0)  # flat layout: every real is paired with every generator
        per_gen[gen] = _sklearn_row(y[mask], s[mask], threshold)
        for key, value in per_gen[gen].items():
            assert report["per_generator"][gen][key] == pytest.approx(value, abs=1e-9), (gen, key)
    for key in ("ap", "roc_auc", "acc", "eer", "tpr_at_1pct_fpr"):
        assert report["per_generator"]["mean"][key] == pytest.approx(np.mean([r[key] for r in per_gen.values()]))
    # the session's detector has learned the artefact
    assert report["overall"]["ap"] > 0.9

    md = (out / "report.md").read_text()
    assert "oracle" in md and "optimistic" in md
    assert "optimistic" not in json.dumps(report["overall"])  # the flag is report-level, the number is there
    assert "gan_a" in capsys.readouterr().out

    # without --oracle, no oracle number anywhere
    plain = tmp_path / "plain"
    assert main(["eval", str(trained["data"]), "--model", str(trained["model"]), "--split", "test", "--out",
                 str(plain), "--no-progress"]) == 0
    payload = json.loads((plain / "report.json").read_text())
    assert "oracle_acc" not in payload["overall"] and "oracle" not in (plain / "report.md").read_text()


def test_calibrate_fpr_stores_the_threshold_in_the_detector(tmp_path, trained, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    before = json.loads((model / "config.json").read_text())
    weights_before = (model / "model.safetensors").read_bytes()
    out = tmp_path / "eval"
    assert main(["eval", str(trained["data"]), "--model", str(model), "--split", "test", "--out", str(out),
                 "--calibrate-fpr", "0.1", "--calibrate-on", str(trained["data"] / "val"), "--save-threshold",
                 "--no-progress"]) == 0
    after = json.loads((model / "config.json").read_text())
    threshold = after["config"]["threshold"]
    assert threshold != 0.5 and 0.0 < threshold <= 1.0
    assert after["config"]["calibration"]["target_fpr"] == 0.1
    assert after["config"]["calibration"]["achieved_fpr"] <= 0.1
    assert after["extra"] == before["extra"] and (model / "model.safetensors").read_bytes() == weights_before
    # the calibrated threshold holds on the calibration reals: at most 10% of them are flagged
    val_scores = load_detector(model).predict(sorted((trained["data"] / "val" / "real").glob("*.png")))
    assert np.mean([p["score"] >= threshold for p in val_scores]) <= 0.1
    assert all(p["label"] == ("generated" if p["score"] >= threshold else "real") for p in val_scores)
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == pytest.approx(threshold)
    assert "calibrated threshold" in capsys.readouterr().out

    # misuse is refused with a reason (exit 2), not a traceback
    for bad in (["--calibrate-fpr", "0.1"], ["--save-threshold"], ["--calibrate-fpr", "1.5", "--calibrate-on", "x"],
                ["--perturb", "jpeg:abc"], ["--perturb", "sharpen:1"]):
        assert main(["eval", str(trained["data"]), "--model", str(model), "--no-progress", *bad]) == 2, bad
    err = capsys.readouterr().err
    assert "--calibrate-on" in err and "jpeg:abc" in err


def test_perturb_writes_robustness_tables_and_plot(tmp_path, trained):
    out = tmp_path / "eval"
    assert main(["eval", str(trained["data"]), "--model", str(trained["model"]), "--split", "test", "--out", str(out),
                 "--perturb", "jpeg:50", "blur:1", "--no-progress"]) == 0
    data = json.loads((out / "robustness.json").read_text())
    assert set(data["perturbations"]) == {"jpeg:50", "blur:1"}
    for row in [data["clean"], *data["perturbations"].values()]:
        assert 0.0 <= row["ap"] <= 1.0
    md = (out / "robustness.md").read_text()
    assert "## jpeg" in md and "## blur" in md and "| clean |" in md and "| 50 |" in md
    assert (out / "robustness.png").stat().st_size > 1000
    for name in ("jpeg_50", "blur_1"):
        assert json.loads((out / "perturb" / name / "report.json").read_text())["n_images"] > 0
    # a blur of σ = 1 px wipes out the period-2 artefact the detector relies on
    assert data["perturbations"]["blur:1"]["ap"] < data["clean"]["ap"]


def test_calibrate_fnr_stores_an_unsure_band_that_detect_uses(tmp_path, trained, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    assert main(["eval", str(trained["data"]), "--model", str(model), "--split", "test", "--out", str(tmp_path / "e"),
                 "--calibrate-fpr", "0.2", "--calibrate-fnr", "0.2", "--calibrate-on", str(trained["data"] / "val"),
                 "--save-threshold", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "unsure band [" in out and "of images unsure" in out
    config = json.loads((model / "config.json").read_text())["config"]
    low, high = config["unsure"]
    band = config["calibration"]["unsure"]
    assert 0.0 <= low <= high <= 1.0 and band["achieved_fpr"] <= 0.2 and band["achieved_fnr"] <= 0.2
    assert config["threshold"] == pytest.approx(high)
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["context"]["unsure"]["low"] == pytest.approx(low)
    # detect labels with the band: real below low, generated at or above high, unsure between
    assert main(["detect", str(trained["data"] / "test"), "--model", str(model), "--out", str(tmp_path / "d.jsonl"),
                 "--no-progress"]) in (0, 3)
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    for r in rows:
        expected = "real" if r["score"] < low else "generated" if r["score"] >= high else "unsure"
        assert r["label"] == expected and r["threshold"] == f"{low:g}..{high:g}"
    # --calibrate-fnr without --calibrate-fpr is refused with the reason
    assert main(["eval", str(trained["data"]), "--model", str(model), "--calibrate-fnr", "0.1", "--no-progress"]) == 2
    assert "--calibrate-fnr" in capsys.readouterr().err
