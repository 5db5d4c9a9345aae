"""Run-config → data splits: generator filtering, stratified validation carve-out, one-class validation."""

from __future__ import annotations

import json

import pytest
import yaml

from hrrkit.cli import main
from hrrkit.models.config import ConfigError
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout
from hrrkit.train.recipe import DataConfig, split_samples


@pytest.fixture(scope="module")
def genimage(tmp_path_factory):
    return write_synthetic_layout(tmp_path_factory.mktemp("gi"), "genimage", per_class=6, generators=("sdv14", "mj"))


def test_train_generators_keep_their_fakes_and_paired_reals(genimage):
    splits = split_samples(DataConfig(root=str(genimage), train_generators=["sdv14"], val_split=None,
                                      test_split="val", val_fraction=0.25), seed=0)
    train_val = splits["train"] + splits["val"]
    assert {s.generator for s in train_val} == {"sdv14"}  # GenImage reals are paired: mj's nature images left out
    assert {s.generator for s in splits["test"]} == {"sdv14", "mj"}
    # the carve-out is stratified: both classes in validation, none of it in training
    assert {s.label for s in splits["val"]} == {0, 1}
    assert not {s.path for s in splits["val"]} & {s.path for s in splits["train"]}
    with pytest.raises(ConfigError, match="none of them"):
        split_samples(DataConfig(root=str(genimage), train_generators=["dalle"]), seed=0)


def test_one_class_validation_keeps_the_latest_epoch_as_best(tmp_path):
    root = write_synthetic_layout(tmp_path / "data", "flat", per_class=6, seed=2)
    for fake in (root / "val" / "fake").rglob("*.png"):
        fake.unlink()  # validation now has reals only: AP undefined
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(root, tmp_path / "run", epochs=2)))
    assert main(["train", str(config), "--no-progress", "--no-test"]) == 0
    epochs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"event": "epoch"' in x]
    assert all("one class" in r["val_note"] for r in epochs)
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["extra"]["epoch"] == 1


def test_train_config_and_data_errors_exit_2_with_the_reason(tmp_path, capsys):
    root = write_synthetic_layout(tmp_path / "data", "flat", per_class=4, seed=4)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(root, tmp_path / "run", epochs=1)))
    base = ["train", str(config), "--no-progress", "--no-test"]
    cases = {
        "no such folder": ["--set", f"data.root={tmp_path / 'missing'}"],
        "unknown backbone 'nope'": ["--set", "detector.backbone.name=nope"],
        "detector.head.num_basis: expected an integer": ["--set", "detector.head.num_basis=eight"],
        "train.epochs=0": ["--set", "train.epochs=0"],
    }
    for expected, extra in cases.items():
        assert main(base + extra) == 2, expected
        assert expected in capsys.readouterr().err
    # a finished run, then the detector changed: resuming refuses and says how to start afresh
    assert main(base) == 0
    assert main(base + ["--set", "detector.backbone.options={width: 4, depth: 2}"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(base + ["--set", "detector.backbone.options={width: 4, depth: 2}", "--restart"]) == 0
