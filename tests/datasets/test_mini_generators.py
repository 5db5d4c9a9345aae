"""The shipped generators, their training recipe and the real-crop source."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrrkit.datasets import GENERATORS, PHOTOGRAPHS, WeightsUnavailableError, load_generator, sample_images
from hrrkit.datasets.generators import WEIGHTS_DIR, weights_digest
from hrrkit.datasets.recipe import TrainSettings, train_generator
from hrrkit.datasets.sources import MIN_CROP_STD, load_photograph, random_crop_spec, render_crop, training_crops


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_shipped_weights_match_their_training_record(name):
    record = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert record["weights_sha256"] == weights_digest(name)
    assert record["spec"] == GENERATORS[name].to_dict()
    assert record["settings"] == json.loads(json.dumps(TrainSettings().__dict__)), "shipped with the default recipe"
    assert record["loss_last_50"] < 0.5 * record["loss_first_50"], "the model learned something"


def test_shipped_weights_are_small():
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert 0 < total <= 20 * 2**20


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_samples_have_the_asked_size_and_depend_only_on_their_seed(name):
    generator = load_generator(name)
    batch = sample_images(generator, [7, 8, 9], (33, 41))
    assert batch.shape == (3, 33, 41, 3) and batch.dtype == np.uint8
    alone = sample_images(generator, [8], (33, 41))[0]
    assert np.abs(batch[1].astype(int) - alone.astype(int)).max() <= 2
    assert np.abs(batch[0].astype(int) - batch[1].astype(int)).mean() > 10
    assert batch.std() > 5, "samples are not flat"


def test_the_recipe_trains_and_the_result_loads(tmp_path):
    crops = training_crops(8, 32, seed=3)
    settings = TrainSettings(steps=2, batch_size=2, warmup_steps=1)
    record = train_generator("unet-ddim", settings, out_dir=tmp_path, progress=False, crops=crops)
    assert record["weights_sha256"] == weights_digest("unet-ddim", tmp_path)
    loaded = load_generator("unet-ddim", tmp_path)
    assert loaded.record["settings"]["steps"] == 2
    assert sample_images(loaded, [0], (8, 8), steps=2).shape == (1, 8, 8, 3)
    # the recipe is seeded end to end: a second run writes the same weights
    again = train_generator("unet-ddim", settings, out_dir=tmp_path / "again", progress=False, crops=crops)
    assert again["weights_sha256"] == record["weights_sha256"]
    other = train_generator("unet-ddim", TrainSettings(steps=2, batch_size=2, warmup_steps=1, seed=1),
                            out_dir=tmp_path / "other", progress=False, crops=crops)
    assert other["weights_sha256"] != record["weights_sha256"]


def test_missing_or_tampered_weights_are_reported(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="train_mini_generators"):
        load_generator("attn-unet-ddpm", tmp_path)
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"unet-ddim{suffix}").write_bytes((WEIGHTS_DIR / f"unet-ddim{suffix}").read_bytes())
    with open(tmp_path / "unet-ddim.safetensors", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(WeightsUnavailableError, match="differs from the training record"):
        load_generator("unet-ddim", tmp_path)
    with pytest.raises(KeyError, match="unknown mini-benchmark generator"):
        load_generator("stable-diffusion")


def test_real_crops_are_colour_textured_and_reproducible():
    for name in PHOTOGRAPHS:
        photo = load_photograph(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and not photo.flags.writeable
        # colour photographs only: grey ones would make "R == G == B" a perfect real-image cue
        assert np.abs(photo[..., 0].astype(int) - photo[..., 1]).mean() > 1, name
    for seed in range(20):
        spec = random_crop_spec(np.random.default_rng(seed), 35, 35)
        crop = render_crop(spec)
        assert crop.shape == (35, 35, 3)
        assert crop.astype(np.float32).mean(axis=2).std() >= MIN_CROP_STD
        np.testing.assert_array_equal(crop, render_crop(random_crop_spec(np.random.default_rng(seed), 35, 35)))
    with pytest.raises(ValueError, match="at most"):
        random_crop_spec(np.random.default_rng(0), 65, 30)
