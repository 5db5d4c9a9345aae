"""The shipped diffusion retrospector: weights match their record, trained on train photographs only,
reproduced by their recipe, loadable offline by name, and the default of the ``hrr`` preset."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hrrkit.retrospect import build_retrospector
from hrrkit.retrospect.bench import count_unet_calls
from hrrkit.retrospect.shipped import (
    SHIPPED_RETROSPECTORS,
    WEIGHTS_DIR,
    ShippedWeightsError,
    load_shipped_unet,
    shipped_record,
    shipped_retrospector,
    weights_sha256,
)
from hrrkit.retrospect.training import REFERENCE_SHORT_RUN, real_photo_crops, train_retrospector

NAME = "real-photo-unet"


def test_shipped_weights_match_their_training_record():
    record = shipped_record(NAME)
    spec = SHIPPED_RETROSPECTORS[NAME].to_dict()
    assert record["weights_sha256"] == weights_sha256(WEIGHTS_DIR / f"{NAME}.safetensors")
    assert record["spec"]["unet"] == spec["unet"] and record["spec"]["schedule"] == spec["schedule"]
    assert record["loss_last_50"] < 0.5 * record["loss_first_50"], "the model learned something"
    assert len(record["loss_every_50"]) == -(-record["settings"]["steps"] // 50)
    assert record["seconds"] < 15 * 60 and record["torch"] and record["diffusers"]
    assert (WEIGHTS_DIR / f"{NAME}.safetensors").stat().st_size < 2 * 2**20, "small enough to ship in the wheel"


def test_trained_on_train_photographs_only():
    from hrrkit.datasets.photos import source_photographs

    used = {p["name"]: p["sha256"] for p in shipped_record(NAME)["photographs"]}
    train = {p.name: p.sha256 for p in source_photographs(role="train")}
    test = {p.name for p in source_photographs(role="test")}
    assert used == train
    assert not set(used) & test
    assert {"coffee", "china", "grace_hopper"} <= test


def test_the_recipe_reproduces_the_recorded_reference_run(tmp_path):
    """A short seeded run of the recipe gives the SHA-256 recorded when the shipped weights were trained."""
    reference = shipped_record(NAME)["reference_short_run"]
    assert reference["settings"] == json.loads(json.dumps(REFERENCE_SHORT_RUN.__dict__))
    torch.set_num_threads(reference["threads"])  # the conftest fixture restores it
    record = train_retrospector(NAME, REFERENCE_SHORT_RUN, out_dir=tmp_path, progress=False, reference_run=False)
    assert record["weights_sha256"] == reference["weights_sha256"]
    assert load_shipped_unet(NAME, tmp_path) is not None  # a retrained folder loads like the shipped one


def test_crops_are_seeded_and_sized():
    a = real_photo_crops(REFERENCE_SHORT_RUN)
    assert a.shape == (8, 32, 32, 3) and a.dtype.name == "uint8"
    assert (a == real_photo_crops(REFERENCE_SHORT_RUN)).all()
    assert a.reshape(8, -1).std(axis=1).min() > 1, "no flat crops"


def test_loads_offline_by_name_and_reconstructs_any_size():
    retro = shipped_retrospector()
    x = torch.rand(2, 3, 37, 50) * 2 - 1
    calls, reported = count_unet_calls(retro, x)
    assert calls == reported == retro.cost((37, 50)).nfe == 2
    out = retro.retrospect(x)
    assert out.reconstruction.shape == x.shape and torch.isfinite(out.reconstruction).all()
    # a round trip to t = 24 keeps the image but does not return it unchanged
    err = out.residual.mean().item()
    assert 1e-4 < err < 0.2, err


def test_config_path_names_the_shipped_model():
    from hrrkit.models.config import RetrospectorConfig

    retro = build_retrospector(RetrospectorConfig(kind="pixel_ddim", path=f"hrrkit:{NAME}"))
    assert retro.config_dict() == shipped_retrospector().config_dict()
    nfe4 = build_retrospector(RetrospectorConfig(kind="pixel_ddim", path=f"hrrkit:{NAME}", options={"strength": 0.05}))
    assert nfe4.cost().nfe == 4 and nfe4.config_hash() != retro.config_hash()
    with pytest.raises(KeyError, match="unknown shipped retrospection model"):
        build_retrospector(RetrospectorConfig(kind="pixel_ddim", path="hrrkit:stable-diffusion"))


def test_hrr_preset_uses_the_shipped_diffusion_retrospector():
    from hrrkit.models.presets import list_presets, preset_config

    config = preset_config("hrr")
    assert config.retrospector.kind == "pixel_ddim" and config.retrospector.path == f"hrrkit:{NAME}"
    for name in list_presets():  # the blur is an ablation, never a preset's silent default
        kind = preset_config(name).retrospector.kind
        assert kind != "blur" or "blur" in name, name


def test_tampered_or_missing_weights_are_reported(tmp_path):
    with pytest.raises(ShippedWeightsError, match="train_retrospector"):
        load_shipped_unet(NAME, tmp_path)
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    with open(tmp_path / f"{NAME}.safetensors", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ShippedWeightsError, match="differs from the training record"):
        load_shipped_unet(NAME, tmp_path)


def test_reports_name_the_retrospector():
    from hrrkit.models.config import RetrospectorConfig
    from hrrkit.retrospect.registry import retrospector_label

    assert retrospector_label(RetrospectorConfig()) == f"pixel_ddim (hrrkit:{NAME})"
    assert retrospector_label(RetrospectorConfig(options={"steps": 4, "strength": 1.0})) == (
        f"pixel_ddim (hrrkit:{NAME}, steps=4, strength=1.0)")
    assert "ablation" in retrospector_label(RetrospectorConfig(kind="blur", path=None))
