"""End to end on CPU, in every supported layout: ``hrrkit train CONFIG`` → ``hrrkit eval`` → ``hrrkit detect``.

The data are generated here (smooth random "real" images, "generated" ones with a faint periodic
artefact, odd sizes 16–40 px); the detector is HRR with a tiny backbone on 24-px crops.
"""

from __future__ import annotations

import json

import pytest
import yaml

from hrrkit.cli import main
from hrrkit.data.layouts import read_layout
from hrrkit.testing.synthetic_layouts import LAYOUT_NAMES, tiny_run_config, write_synthetic_layout

GENERATORS = ("gan_a", "diff_b")


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_train_eval_detect_in_layout(tmp_path, layout, capsys):
    root = write_synthetic_layout(tmp_path / "data", layout, per_class=10, generators=GENERATORS, seed=1)
    run_dir = tmp_path / "run"
    config = tiny_run_config(root, run_dir, epochs=2)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    test_split = config["data"].get("test_split", "test")

    # --- train (validation each epoch, best-AP checkpoint, test report with the best checkpoint)
    assert main(["train", str(config_path), "--no-progress"]) == 0
    assert "best validation AP" in capsys.readouterr().out
    best = run_dir / "best"
    assert (best / "model.safetensors").is_file() and (best / "config.json").is_file()
    epochs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epoch_records = [r for r in epochs if r["event"] == "epoch"]
    assert [r["epoch"] for r in epoch_records] == [0, 1]
    assert all(0.0 <= r["val_ap"] <= 1.0 and r["train_loss"] > 0 for r in epoch_records)
    assert any(r["event"] == "step" for r in epochs)
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["detector"]["backbone"]["options"] == {"width": 8, "depth": 2}
    assert recorded["data"]["root"] == str(root.resolve())

    test_samples = read_layout(root, split=test_split)
    report = json.loads((run_dir / "test_report" / "report.json").read_text())
    assert report["n_images"] == len(test_samples)
    assert set(report["per_generator"]) == {*GENERATORS, "mean"}
    for row in report["per_generator"].values():
        for key in ("acc", "real_acc", "fake_acc", "balanced_acc", "ap", "roc_auc", "eer", "tpr_at_1pct_fpr",
                    "tpr_at_5pct_fpr", "acc_at_0_5"):
            assert key in row
    # the artefact is learnable: even two tiny epochs put the test AP far above chance (0.5)
    assert report["overall"]["ap"] > 0.8, report["overall"]

    # --- eval: the same split again through the CLI, into its own folder
    eval_dir = tmp_path / "eval"
    assert main(["eval", str(root), "--model", str(best), "--split", test_split, "--out", str(eval_dir),
                 "--no-progress"]) == 0
    evaluated = json.loads((eval_dir / "report.json").read_text())
    assert evaluated["n_images"] == len(test_samples) and evaluated["skipped"] == []
    assert evaluated["per_generator"]["mean"]["ap"] == pytest.approx(report["per_generator"]["mean"]["ap"])
    assert {"roc.png", "pr.png", "scores.png"} <= {p.name for p in eval_dir.iterdir()}
    md = (eval_dir / "report.md").read_text()
    assert "| gan_a |" in md and "| diff_b |" in md and "oracle" not in md

    # --- detect: a few test images by path, JSON lines out
    files = [str(s.path) for s in test_samples[:5]]
    out = tmp_path / "scores.jsonl"
    assert main(["detect", *files, "--model", str(best), "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == files
    assert all(0.0 <= r["score"] <= 1.0 and r["label"] in ("real", "generated") and r["error"] is None for r in rows)
    assert all(set(r["scale_scores"]) == {"0.5", "1", "2"} for r in rows)
