"""The offline mini-benchmark: complete, balanced, reproducible, verified, and really sampled."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrrkit.data.layouts import read_csv_manifest
from hrrkit.datasets import (
    GENERATORS,
    HELDOUT_GENERATOR,
    QUICK,
    SEEN_GENERATOR,
    SEEN_SIZES,
    SPLITS,
    UNSEEN_SIZES,
    MiniBenchmarkConfig,
    build_mini_benchmark,
    load_generator,
    sample_images,
)

# a small build for the tests that build more than once (one size-balanced group per split kind)
TINY = MiniBenchmarkConfig(per_class={"train": 8, "test_heldout_generator": 8})


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return build_mini_benchmark(tmp_path_factory.mktemp("mini"), quick=True, progress=False)


def _hashes(manifest: Path) -> dict[str, str]:
    with open(manifest, newline="") as handle:
        return {row["path"]: row["sha256"] for row in csv.DictReader(handle)}


def test_manifest_is_complete_and_every_hash_verifies(bench):
    samples = read_csv_manifest(bench.manifest)
    assert len(samples) == 2 * sum(QUICK.per_class.values())
    assert bench.counts() == {split: {"real": n, "fake": n} for split, n in QUICK.per_class.items()}
    assert {s.split for s in samples} == set(SPLITS)
    assert bench.verify() == []
    for row in bench.records():
        data = (bench.root / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert row["source"] == "skimage-photographs"
    # no image is in the build twice (a duplicate across splits would leak)
    assert len({row["sha256"] for row in bench.records()}) == len(samples)


def test_cached_build_is_reused(bench):
    again = build_mini_benchmark(bench.root.parent, quick=True, progress=False)
    assert again.reused and again.root == bench.root
    assert _hashes(again.manifest) == _hashes(bench.manifest)


def test_files_decode_to_the_recorded_size_and_format(bench):
    for row in bench.records():
        with Image.open(bench.root / row["path"]) as image:
            assert image.format == {"png": "PNG", "jpeg": "JPEG"}[row["format"]]
            assert image.mode == "RGB"
            assert image.size == (int(row["width"]), int(row["height"]))


def test_both_formats_in_both_classes_balanced_per_split_and_size(bench):
    rows = bench.records()
    for split in SPLITS:
        for label in ("0", "1"):
            mine = [r for r in rows if r["split"] == split and r["label"] == label]
            assert Counter(r["format"] for r in mine) == {"png": len(mine) // 2, "jpeg": len(mine) // 2}
            by_size_format = Counter((r["height"], r["width"], r["format"]) for r in mine)
            assert len(set(by_size_format.values())) == 1, by_size_format
        # reals and fakes have the same sizes and JPEG quality range: neither is a cue
        real = [r for r in rows if r["split"] == split and r["label"] == "0"]
        fake = [r for r in rows if r["split"] == split and r["label"] == "1"]
        assert Counter((r["height"], r["width"]) for r in real) == Counter((r["height"], r["width"]) for r in fake)
        qualities = [int(r["quality"]) for r in rows if r["split"] == split and r["format"] == "jpeg"]
        assert min(qualities) >= QUICK.jpeg_quality[0] and max(qualities) <= QUICK.jpeg_quality[1]


def test_unseen_sizes_are_absent_from_train(bench):
    rows = bench.records()
    size = lambda r: (int(r["height"]), int(r["width"]))
    train_sizes = {size(r) for r in rows if r["split"] == "train"}
    unseen = {size(r) for r in rows if r["split"] == "test_unseen_sizes"}
    assert train_sizes == set(SEEN_SIZES)
    assert unseen == set(UNSEEN_SIZES)
    assert not train_sizes & unseen
    assert any(h % 2 for h, w in train_sizes) and any(h % 2 for h, w in unseen)  # odd sizes on both sides


def test_heldout_generator_differs_and_only_appears_in_its_split(bench):
    seen, held = GENERATORS[SEEN_GENERATOR], GENERATORS[HELDOUT_GENERATOR]
    assert seen.unet != held.unet and seen.schedule != held.schedule and seen.sampler != held.sampler
    rows = bench.records()
    fakes_of = lambda split: {r["generator"] for r in rows if r["split"] == split and r["label"] == "1"}
    for split in ("train", "val", "test_seen", "test_unseen_sizes"):
        assert fakes_of(split) == {SEEN_GENERATOR}
    assert fakes_of("test_heldout_generator") == {HELDOUT_GENERATOR}
    assert all(r["generator"] == "" for r in rows if r["label"] == "0")
    # the two trained models are different functions: same seeds, different images
    a = sample_images(load_generator(SEEN_GENERATOR), [1, 2], (32, 32)).astype(float)
    b = sample_images(load_generator(HELDOUT_GENERATOR), [1, 2], (32, 32)).astype(float)
    assert np.abs(a - b).mean() > 10


def test_generated_images_come_from_the_sampler(bench):
    """A fake file holds exactly what its generator samples from its recorded seed."""
    rows = [r for r in bench.records() if r["label"] == "1" and r["format"] == "png"]
    for generator in (SEEN_GENERATOR, HELDOUT_GENERATOR):
        row = next(r for r in rows if r["generator"] == generator)
        stored = np.asarray(Image.open(bench.root / row["path"]).convert("RGB")).astype(int)
        again = bench.regenerate(row).astype(int)
        # alone instead of in its batch: batched convolutions may round differently in the last bit
        assert np.abs(stored - again).max() <= 2, generator
        assert np.abs(stored - again).mean() < 0.05, generator
        other = dict(row, seed=str(int(row["seed"]) + 1))
        assert np.abs(stored - bench.regenerate(other).astype(int)).mean() > 10, "another seed must differ"
    # and real crops are the photographs' pixels, cut again from their seed
    real = next(r for r in bench.records() if r["label"] == "0" and r["format"] == "png")
    stored = np.asarray(Image.open(bench.root / real["path"]).convert("RGB"))
    np.testing.assert_array_equal(stored, bench.regenerate(real))


def test_same_seed_same_bytes_and_a_corrupted_file_is_rebuilt(tmp_path):
    first = build_mini_benchmark(tmp_path / "a", config=TINY, quick=True, progress=False)
    second = build_mini_benchmark(tmp_path / "b", config=TINY, quick=True, progress=False)
    assert first.key == second.key and not second.reused
    assert _hashes(first.manifest) == _hashes(second.manifest)
    other_seed = build_mini_benchmark(tmp_path / "c", config=TINY, seed=1, quick=True, progress=False)
    assert other_seed.key != first.key
    assert set(_hashes(other_seed.manifest).values()).isdisjoint(_hashes(first.manifest).values())

    victim = next(iter(_hashes(second.manifest)))
    path = second.root / victim
    path.write_bytes(path.read_bytes()[:-10] + b"\0" * 10)
    assert any(victim in problem for problem in second.verify())
    rebuilt = build_mini_benchmark(tmp_path / "b", config=TINY, quick=True, progress=False)
    assert not rebuilt.reused and rebuilt.verify() == []
    assert _hashes(rebuilt.manifest) == _hashes(first.manifest)

    (rebuilt.root / "build.json").unlink()  # an unfinished build is never reused
    assert not build_mini_benchmark(tmp_path / "b", config=TINY, quick=True, progress=False).reused
    assert not list((tmp_path / "b").glob(".*")), "no partial or trash folders are left behind"


def test_cache_root_follows_hrrkit_cache(tmp_path, monkeypatch):
    from hrrkit.datasets import default_cache_root

    monkeypatch.setenv("HRRKIT_CACHE", str(tmp_path / "cache"))
    assert default_cache_root() == tmp_path / "cache" / "mini-benchmark"
    monkeypatch.delenv("HRRKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "hrrkit" / "mini-benchmark"


@pytest.mark.parametrize(
    "per_class, message",
    [({"train": 12}, "multiple of 8"), ({"nope": 8}, "unknown splits"), ({"val": 0}, "multiple of 8")],
)
def test_bad_config_is_refused(per_class, message):
    with pytest.raises(ValueError, match=message):
        MiniBenchmarkConfig(per_class=per_class)
