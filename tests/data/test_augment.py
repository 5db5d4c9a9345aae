"""Augment presets: cnnspot (CNNSpot's Blur+JPEG 0.5) and jpeg-chain (up to 3 JPEG compressions)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from hrrkit.data.augment import PRESETS, AugmentChain, JpegChain
from hrrkit.data.dataset import AUGMENTATION_PRESETS, ImageDataset, ReEncode
from hrrkit.data.layouts import Sample
from hrrkit.models.config import ConfigError, InputConfig


def _photo(seed: int = 0, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    smooth = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    noise = rng.integers(0, 24, smooth.shape, dtype=np.uint8)
    return Image.fromarray(smooth + noise)


def test_presets_are_registered_and_accepted_by_the_config():
    for name in ("cnnspot", "jpeg-chain", "cnnspot+jpeg-chain"):
        assert AUGMENTATION_PRESETS[name] is PRESETS[name]
        assert InputConfig(augment=name).augment == name
    # CNNSpot is the paper the repository calls CNNDetection: the same transform under both names
    assert AUGMENTATION_PRESETS["cnnspot"] == AUGMENTATION_PRESETS["cnndetection"]
    with pytest.raises(ConfigError, match="input.augment"):
        InputConfig(augment="jpeg-chains")


def test_chain_length_and_quality_distribution():
    chain = JpegChain(prob=0.5, max_compressions=3, quality=(65, 100))
    rng = random.Random(0)
    draws = [chain.qualities(rng) for _ in range(6000)]
    counts = Counter(len(d) for d in draws)
    assert set(counts) == {0, 1, 2, 3}
    assert abs(counts[0] / 6000 - 0.5) < 0.03  # half the images stay clean
    for k in (1, 2, 3):
        assert abs(counts[k] / 6000 - 0.5 / 3) < 0.03
    qualities = [q for d in draws for q in d]
    assert min(qualities) == 65 and max(qualities) == 100


def test_chain_equals_successive_reencodes_and_is_deterministic():
    img = _photo()
    chain = JpegChain(prob=1.0, max_compressions=3, quality=(40, 90))
    qualities = chain.qualities(random.Random(7))
    assert 1 <= len(qualities) <= 3
    expected = img
    for q in qualities:
        expected = ReEncode("JPEG", q)(expected)
    out = chain(img, random.Random(7))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(chain(img, random.Random(7))), np.asarray(out))
    assert not np.array_equal(np.asarray(out), np.asarray(img))  # it did compress


def test_identity_flip_and_bad_parameters():
    img = _photo()
    assert JpegChain(prob=0.0).is_identity
    same = JpegChain(prob=0.0)(img, random.Random(0))
    np.testing.assert_array_equal(np.asarray(same), np.asarray(img))
    flipped = JpegChain(prob=0.0, hflip_prob=1.0)(img, random.Random(0))
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(img)[:, ::-1])
    for bad in ({"prob": 1.5}, {"max_compressions": 0}, {"quality": (0, 50)}, {"quality": (90, 80)}):
        with pytest.raises(ValueError, match="JpegChain"):
            JpegChain(**bad)


def test_combined_chain_shares_the_rng():
    chain = PRESETS["cnnspot+jpeg-chain"]
    assert isinstance(chain, AugmentChain) and not chain.is_identity
    img = _photo(1)
    a = chain(img, random.Random(3))
    b = chain(img, random.Random(3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dataset_applies_jpeg_chain_per_item_and_epoch(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"img{i}.png"
        _photo(i).save(path)
        paths.append(Sample(path=path, label=i % 2))
    clean = ImageDataset(paths, input_policy="center_crop", crop_size=32, augment="none")
    aug = ImageDataset(paths, input_policy="center_crop", crop_size=32, augment="jpeg-chain", seed=5)
    again = ImageDataset(paths, input_policy="center_crop", crop_size=32, augment="jpeg-chain", seed=5)
    changed = 0
    for i in range(4):
        x, y = aug[i]["image"], again[i]["image"]
        assert (x == y).all()  # a pure function of (seed, epoch, index)
        changed += int(not (x == clean[i]["image"]).all())
    assert changed >= 1
