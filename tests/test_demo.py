"""`hrrkit demo --quick`: the README's first command, end to end, on the offline mini-benchmark."""

from __future__ import annotations

import json
import math

import pytest

from hrrkit.cli import main
from hrrkit.demo import DETECTORS, TEST_SPLITS


@pytest.mark.slow
def test_demo_quick_writes_a_report_from_this_run(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    payload = json.loads((out / "report.json").read_text())
    assert payload["mode"] == "quick" and payload["benchmark"]["reused"] is False
    assert set(payload["results"]) == set(DETECTORS)
    for name in DETECTORS:
        assert (out / "detectors" / name / "best" / "model.safetensors").is_file()
        for split in TEST_SPLITS:
            row = payload["results"][name][split]
            assert row["n_real"] > 0 and row["n_fake"] > 0
            assert 0.0 <= row["ap"] <= 1.0 and not math.isnan(row["roc_auc"])
    # the table the user sees is the one in the report, with this run's numbers
    report = (out / "report.md").read_text()
    ap = payload["results"]["hrr"]["test_seen"]["ap"]
    assert f"{ap:.3f}" in report and f"{ap:.3f}" in printed
    for fig in ("roc.png", "evidence.png"):
        assert (out / fig).stat().st_size > 1000 and f"({fig})" in report
    # a second run reuses the verified cache instead of rebuilding it
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache), "--no-progress",
                 "--detectors", "dire"]) == 0
    assert json.loads((out / "report.json").read_text())["benchmark"]["reused"] is True
