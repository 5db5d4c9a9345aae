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


def test_aligned_recipe_trains_on_the_pairs_hrrkit_data_align_builds(tmp_path, capsys):
    """The aligned recipe end to end: photos → `hrrkit data align` (tiny autoencoder) → `hrrkit train`."""
    import torch

    from hrrkit.data.aligned import pair_keys
    from hrrkit.testing.aligned import save_tiny_autoencoders, write_photos

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than the work on 2 shared cores
    try:
        ae = save_tiny_autoencoders(tmp_path / "ae")["ae4"]
        write_photos(tmp_path / "photos", count=10, png=2, seed=3)
        assert main(["data", "align", str(tmp_path / "photos"), "--vae", str(ae), "--out", str(tmp_path / "aligned"),
                     "--val-fraction", "0.25", "--test-fraction", "0.25", "--no-progress"]) == 0
        capsys.readouterr()
        run = tmp_path / "run"
        shrink = [f"data.root={tmp_path / 'aligned'}", f"output_dir={run}", "train.epochs=1", "train.batch_size=8",
                  "train.num_workers=0", "detector.input.crop_size=24", "detector.backbone.options={width: 8, depth: 2}",
                  f"detector.retrospector.path={ae}"]
        args = ["train", str(EXAMPLES / "configs" / "aligned.yaml"), "--no-progress"]
        args += [x for item in shrink for x in ("--set", item)]
        assert main(args + ["--print-config"]) == 0
        resolved = json.loads(capsys.readouterr().out)
        assert resolved["data"]["pairs"] is True and resolved["detector"]["retrospector"]["kind"] == "autoencoder"
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    test = read_layout(tmp_path / "aligned", split="test")
    keys = pair_keys(test)
    assert len(test) == 2 * len(set(keys))  # every test photo with its reconstruction, named alike
    report = json.loads((run / "test_report" / "report.json").read_text())
    assert report["n_images"] == len(test) and set(report["per_generator"]) == {"ae4", "mean"}
