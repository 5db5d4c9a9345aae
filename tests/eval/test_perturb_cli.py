"""``hrrkit eval --perturb`` with the delivery perturbations, end to end on a tiny trained detector."""

from __future__ import annotations

import json

import pytest
import yaml

from hrrkit.cli import main
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("perturb_detector")
    root = write_synthetic_layout(tmp / "data", "flat", per_class=10, seed=21)
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(root, tmp / "run", epochs=2)))
    assert main(["train", str(config), "--no-progress", "--no-test"]) == 0
    return root, tmp / "run" / "best"


def test_delivery_perturbations_through_eval(tmp_path, trained):
    root, model = trained
    out = tmp_path / "eval"
    assert main(["eval", str(root), "--model", str(model), "--split", "test", "--out", str(out), "--perturb",
                 "webp:40,90", "png-roundtrip", "downscale-then-jpeg", "screenshot-like", "--no-progress"]) == 0
    data = json.loads((out / "robustness.json").read_text())
    assert set(data["perturbations"]) == {"webp:40", "webp:90", "png-roundtrip", "downscale-then-jpeg:0.5",
                                          "screenshot-like:1.25"}
    # lossless: every score, hence every metric, is the clean one
    assert data["perturbations"]["png-roundtrip"] == data["clean"]
    clean_scores = (out / "scores.csv").read_text()
    assert (out / "perturb" / "png-roundtrip" / "scores.csv").read_text() == clean_scores
    for row in data["perturbations"].values():
        assert 0.0 <= row["ap"] <= 1.0
    md = (out / "robustness.md").read_text()
    for heading in ("## webp", "## png-roundtrip", "## downscale-then-jpeg", "## screenshot-like"):
        assert heading in md
    assert "| 40 |" in md and "| on |" in md
