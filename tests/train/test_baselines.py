"""The baseline presets (dire, univfd, npr, cnnspot) train and evaluate through ``hrrkit train`` /
``hrrkit eval`` like ``hrr``, on small synthetic data (odd sizes 16–40 px, 32-px crops)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from hrrkit.cli import main
from hrrkit.models import DetectorConfig, load_detector, preset_config
from hrrkit.models.baselines import dire
from hrrkit.models.presets import list_presets, preset_descriptions
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout

BASELINES = ("dire", "univfd", "npr", "cnnspot")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_synthetic_layout(tmp_path_factory.mktemp("data"), "flat", per_class=10, seed=3)


def _train(tmp_path, data_root, preset: str, epochs: int = 2):
    run_dir = tmp_path / f"run_{preset}"
    config = tiny_run_config(data_root, run_dir, epochs=epochs)
    # the preset as it is, at CPU-test sizes: only the crop shrinks (224 px in the preset)
    config["detector"] = {"preset": preset, "input": {"crop_size": 32}}
    config["train"].update({"batch_size": 8, "lr": 3e-3})
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0
    return run_dir


def test_presets_are_registered_with_descriptions():
    names = list_presets()
    for name in BASELINES:
        assert name in names
        assert preset_descriptions()[name]
    assert preset_config("cnnspot").input.augment == "cnnspot"
    assert preset_config("univfd").backbone.options["frozen"] is True
    assert preset_config("npr").backbone.name == "npr_cnn"
    published = preset_config("dire")
    assert published == dire(DetectorConfig(name="dire"))  # DIRE as published, not the older ablation
    assert published.retrospector == type(published.retrospector)(input="residual")  # the default retrospector
    assert not published.rescale.enabled and published.backbone.options["input_offset"] == -1
    for config in [preset_config(name) for name in BASELINES]:
        assert config.head.kind == "linear" and config.loss.correntropy == 0 and config.input.crop_size == 224


@pytest.mark.parametrize("preset", BASELINES)
def test_baseline_trains_and_evaluates(tmp_path, data_root, preset, capsys):
    run_dir = _train(tmp_path, data_root, preset)
    assert "best validation AP" in capsys.readouterr().out
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(0.0 <= r["val_ap"] <= 1.0 and r["train_loss"] > 0 for r in epochs)
    recorded = json.loads((run_dir / "config.json").read_text())["detector"]
    assert recorded["name"] == preset and recorded["head"]["kind"] == "linear"

    eval_dir = tmp_path / f"eval_{preset}"
    assert main(["eval", str(data_root), "--model", str(run_dir / "best"), "--split", "test", "--out",
                 str(eval_dir), "--no-progress"]) == 0
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["n_images"] > 0 and 0.0 <= report["overall"]["ap"] <= 1.0
    if preset == "npr":
        # the synthetic fakes carry a pixel-period checkerboard: exactly what NPR's relation exposes
        assert report["overall"]["ap"] > 0.9, report["overall"]
    if preset == "univfd":
        # a linear probe: the frozen DINOv2 weights are still the converted pretrained ones
        from hrrkit.models.dinov2 import load_dinov2_state_dict

        detector = load_detector(run_dir / "best")
        body = detector.msr.backbone.body
        pretrained = load_dinov2_state_dict()
        for key in ("patch_embed.proj.weight", "pos_embed", "blocks.11.mlp.fc2.weight", "norm.weight"):
            torch.testing.assert_close(body.state_dict()[key], pretrained[key], rtol=0, atol=0)


def test_train_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.split("detector presets", 1)[1].splitlines()[1:] if line.strip()}
    assert {"hrr", *BASELINES} <= listed
