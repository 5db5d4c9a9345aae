"""Every example runs: the custom detector script, and each training recipe on a tiny generated
folder in its layout (the recipe file as shipped, shrunk with ``--set`` overrides)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from hrrkit.cli import main
from hrrkit.data.layouts import read_layout
from hrrkit.testing.synthetic_layouts import write_synthetic_layout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# recipe → (layout, generators written, the split its test report covers)
RECIPES = {
    "forensynths": ("forensynths", ("progan", "stylegan"), "test"),
    "diffusionforensics": ("diffusionforensics", ("adm", "ldm"), "test"),
    "genimage": ("genimage", ("stable_diffusion_v_1_4", "midjourney"), "val"),
}


def test_custom_detector_example_learns(capsys):
    source = (EXAMPLES / "custom_detector.py").read_text()
    assert len(source.splitlines()) < 40
    runpy.run_path(str(EXAMPLES / "custom_detector.py"), run_name="__main__")
    out = capsys.readouterr().out
    accuracy = float(out.strip().rsplit(" ", 1)[-1])
    assert accuracy >= 0.9, out


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_training_recipe_runs_on_a_tiny_folder(tmp_path, recipe, capsys):
    layout, generators, test_split = RECIPES[recipe]
    root = write_synthetic_layout(tmp_path / recipe, layout, per_class=8, generators=generators, seed=7)
    run = tmp_path / "run"
    shrink = [
        f"data.root={root}", f"output_dir={run}", "train.epochs=1", "train.batch_size=8", "train.num_workers=0",
        "detector.input.crop_size=24", "detector.backbone.options={width: 8, depth: 2}",
    ]
    config = EXAMPLES / "configs" / f"{recipe}.yaml"
    args = ["train", str(config), "--no-progress"] + [x for item in shrink for x in ("--set", item)]
    assert main(args + ["--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["data"]["layout"] == layout and resolved["detector"]["input"]["crop_size"] == 24
    assert main(args) == 0
    report = json.loads((run / "test_report" / "report.json").read_text())
    assert set(report["per_generator"]) == {*generators, "mean"}  # every generator tested, trained on one or all
    assert report["n_images"] == len(read_layout(root, split=test_split))
    best = json.loads((run / "best" / "config.json").read_text())["config"]
    assert best["input"]["crop_size"] == 24 and best["name"] == "hrr"


@pytest.mark.parametrize(
    ("script", "args", "outputs"),
    [
        ("msr_pictures.py", ["--size", "64"], ["msr_scales.png", "msr_line_enhancement.png"]),
        ("afr_shape_functions.py", ["--samples", "600"], ["afr.png"]),
    ],
)
def test_figure_examples_write_their_pictures(tmp_path, monkeypatch, script, args, outputs):
    out = tmp_path / "afr.png" if script.startswith("afr") else tmp_path
    monkeypatch.setattr("sys.argv", [script, "--out", str(out), *args])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 1000
