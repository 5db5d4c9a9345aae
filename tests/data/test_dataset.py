"""ImageDataset: input policies, augmentation determinism, re-encoding, skip/strict behaviour,
size buckets and the skip log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hrrkit.data.dataset import (
    Augmentation,
    ImageDataset,
    ReEncode,
    SizeBucketBatchSampler,
    SkipLog,
    center_crop,
    collate_samples,
    grid_tiles,
    pad_to_min_size,
)
from hrrkit.data.io import ImageLoadError, TruncatedImageError
from hrrkit.data.layouts import Sample
from hrrkit.testing.image_corpus import write_corpus


def _write(path, height, width, seed=0, fmt="PNG"):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, fmt)
    return path


@pytest.fixture
def corpus_samples(tmp_path):
    written = write_corpus(tmp_path)
    samples = [Sample(p, i % 2, "gen" if i % 2 else None) for i, p in enumerate(sorted(written))]
    return samples, written


def test_bad_files_are_skipped_and_listed_good_ones_batched(corpus_samples):
    samples, written = corpus_samples
    dataset = ImageDataset(samples, input_policy="center_crop", crop_size=8)
    loader = DataLoader(dataset, batch_size=5, collate_fn=collate_samples, num_workers=0)
    log, seen = SkipLog(), []
    for batch in loader:
        log.update(batch)
        if batch["images"] is not None:
            assert batch["images"].shape == (len(batch["paths"]), 3, 8, 8)
            assert torch.isfinite(batch["images"]).all() and batch["images"].abs().max() <= 1
            seen += batch["paths"]
    good = {p.as_posix() for p, c in written.items() if c.is_good}
    bad = {p.as_posix(): c for p, c in written.items() if not c.is_good}
    assert set(seen) == good
    assert {e["path"] for e in log.entries} == set(bad)
    for entry in log.entries:
        assert entry["error"] == bad[entry["path"]].error.kind
    assert sum(log.counts().values()) == len(bad)
    assert f"skipped {len(bad)} unreadable file(s)" in log.summary()


def test_skipping_works_across_worker_processes(corpus_samples):
    samples, written = corpus_samples
    dataset = ImageDataset(samples, input_policy="center_crop", crop_size=4)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_samples, num_workers=2)
    log, n_good = SkipLog(), 0
    for batch in loader:
        log.update(batch)
        n_good += len(batch["paths"])
    assert n_good == sum(c.is_good for c in written.values())
    assert len(log) == sum(not c.is_good for c in written.values())


def test_strict_mode_raises_the_typed_error(corpus_samples):
    samples, written = corpus_samples
    index = next(i for i, s in enumerate(samples) if s.path.name == "truncated.png")
    dataset = ImageDataset(samples, strict=True, crop_size=4)
    with pytest.raises(TruncatedImageError, match="truncated.png"):
        dataset[index]
    loader = DataLoader(dataset, batch_size=len(samples), collate_fn=collate_samples)
    with pytest.raises(ImageLoadError):
        next(iter(loader))


def test_all_skipped_batch_has_no_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    batch = collate_samples([ImageDataset([Sample(tmp_path / "a.png", 1)])[0]])
    assert batch["images"] is None and batch["labels"].numel() == 0
    assert batch["skipped"] == [
        {"index": 0, "path": (tmp_path / "a.png").as_posix(), "error": "empty", "reason": "the file is empty (0 bytes)"}
    ]


def test_skip_log_writes_json_atomically(tmp_path):
    log = SkipLog()
    log.add(TruncatedImageError("/d/b.jpg", "the file is truncated"))
    log.update([{"path": "/d/a.png", "error": "empty", "reason": "0 bytes", "index": 3}])
    path = log.write(tmp_path / "out" / "skipped.json")
    assert json.loads(path.read_text()) == [
        {"path": "/d/a.png", "error": "empty", "reason": "0 bytes"},
        {"path": "/d/b.jpg", "error": "truncated", "reason": "the file is truncated"},
    ]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["skipped.json"]  # no temp file left


def test_input_policies_shapes_and_values(tmp_path):
    path = _write(tmp_path / "x.png", 37, 53)
    array = np.array(Image.open(path).convert("RGB"))
    sample = [Sample(path, 1)]
    native = ImageDataset(sample, input_policy="native")[0]["image"]
    assert native.shape == (3, 37, 53)
    torch.testing.assert_close(native, torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1)
    centre = ImageDataset(sample, input_policy="center_crop", crop_size=16)[0]["image"]
    torch.testing.assert_close(centre, native[:, 10:26, 18:34])
    crop = ImageDataset(sample, input_policy="random_crop", crop_size=16, seed=3)
    a, b = crop[0]["image"], crop[0]["image"]
    torch.testing.assert_close(a, b)  # deterministic for a given (seed, epoch, index)
    found = [
        (t, l) for t in range(37 - 15) for l in range(53 - 15) if torch.equal(native[:, t : t + 16, l : l + 16], a)
    ]
    assert found, "a random crop must be a window of the image"
    tiles = ImageDataset(sample, input_policy="tiles", crop_size=16)[0]["image"]
    assert tiles.shape == (3 * 4, 3, 16, 16)  # ceil(37/16)=3 rows, ceil(53/16)=4 columns
    torch.testing.assert_close(tiles[0], native[:, :16, :16])
    torch.testing.assert_close(tiles[-1], native[:, -16:, -16:])  # the last tile is flush with the corner
    limited = ImageDataset(sample, input_policy="tiles", crop_size=16, max_tiles=5)[0]["image"]
    assert limited.shape == (5, 3, 16, 16)


def test_tiny_images_are_padded_by_reflection_never_upscaled():
    one = np.full((1, 1, 3), 7, dtype=np.uint8)
    assert (center_crop(one, 5) == 7).all() and center_crop(one, 5).shape == (5, 5, 3)
    thin = np.arange(3, dtype=np.uint8).reshape(1, 3, 1)
    padded = pad_to_min_size(thin, 4)
    assert padded.shape == (4, 4, 1)
    assert set(np.unique(padded)) <= {0, 1, 2}
    assert grid_tiles(thin, 2).shape == (2, 2, 2, 1)  # padded to 2x3: one row, two columns


def test_tiles_collate_records_the_owner(tmp_path):
    a = _write(tmp_path / "a.png", 20, 20)
    b = _write(tmp_path / "b.png", 10, 10)
    dataset = ImageDataset([Sample(a, 0), Sample(b, 1)], input_policy="tiles", crop_size=10)
    batch = collate_samples([dataset[0], dataset[1]])
    assert batch["images"].shape == (5, 3, 10, 10)
    assert batch["tile_owner"].tolist() == [0, 0, 0, 0, 1]
    assert batch["labels"].tolist() == [0, 1]


def test_native_batches_of_mixed_sizes_are_refused_with_advice(tmp_path):
    a = _write(tmp_path / "a.png", 8, 9)
    b = _write(tmp_path / "b.png", 9, 8)
    dataset = ImageDataset([Sample(a, 0), Sample(b, 1)], input_policy="native")
    with pytest.raises(ValueError, match="SizeBucketBatchSampler"):
        collate_samples([dataset[0], dataset[1]])


def test_size_bucket_sampler_groups_by_size_and_covers_everything(tmp_path):
    sizes_on_disk = [(8, 9), (9, 8), (8, 9), (8, 9), (5, 5), (9, 8)]
    samples = [Sample(_write(tmp_path / f"{i}.png", h, w, seed=i), i % 2) for i, (h, w) in enumerate(sizes_on_disk)]
    (tmp_path / "bad.png").write_bytes(b"garbage")
    samples.append(Sample(tmp_path / "bad.png", 1))
    dataset = ImageDataset(samples, input_policy="native")
    sizes = dataset.header_sizes()
    assert sizes[:6] == sizes_on_disk and sizes[6] is None
    sampler = SizeBucketBatchSampler(sizes, batch_size=2, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert len(sampler) == len(batches)
    for batch in batches:
        assert len({sizes[i] for i in batch}) == 1 and len(batch) <= 2
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples)
    log = SkipLog()
    total = 0
    for batch in loader:
        log.update(batch)
        total += len(batch["paths"])
    assert total == 6 and [e["path"] for e in log.entries] == [(tmp_path / "bad.png").as_posix()]
    sampler.set_epoch(1)
    assert sorted(i for b in sampler for i in b) == list(range(7))
    ranks = [list(SizeBucketBatchSampler(sizes, 2, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    assert {i for r in ranks for b in r for i in b} == set(range(7))


def test_header_sizes_follow_exif_rotation(tmp_path):
    img = Image.new("RGB", (12, 5))
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    dataset = ImageDataset([Sample(tmp_path / "r.jpg", 0)], input_policy="native")
    assert dataset.header_sizes() == [(12, 5)]
    assert dataset[0]["image"].shape == (3, 12, 5)


def test_reencode_treats_real_and_fake_alike(tmp_path):
    png = _write(tmp_path / "fake.png", 32, 32, seed=1)
    jpg = _write(tmp_path / "real.jpg", 32, 32, seed=2, fmt="JPEG")
    dataset = ImageDataset([Sample(jpg, 0), Sample(png, 1)], input_policy="native", reencode="jpeg:75")
    for index, path in enumerate((jpg, png)):
        expected = ReEncode("jpeg", 75)(Image.open(path).convert("RGB"))
        got = dataset[index]["image"]
        torch.testing.assert_close(got, torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1) / 127.5 - 1)
    raw = ImageDataset([Sample(png, 1)], input_policy="native")[0]["image"]
    assert not torch.equal(raw, dataset[1]["image"])  # lossy: it really re-encoded
    assert ReEncode.parse("png") == ReEncode("PNG") and ReEncode.parse("none") is None
    with pytest.raises(ValueError, match="examples"):
        ReEncode.parse("gif:3")


def test_augmentation_is_seeded_per_epoch_and_index(tmp_path):
    path = _write(tmp_path / "x.png", 24, 24)
    strong = Augmentation(blur_prob=1.0, blur_sigma=(1.0, 2.0), jpeg_prob=1.0, jpeg_quality=(30, 40))
    dataset = ImageDataset([Sample(path, 1)], input_policy="native", augment=strong, seed=5)
    first = dataset[0]["image"]
    torch.testing.assert_close(dataset[0]["image"], first)
    plain = ImageDataset([Sample(path, 1)], input_policy="native")[0]["image"]
    assert (first - plain).abs().mean() > 0.01  # blurred and compressed
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["image"], first)
    assert ImageDataset([Sample(path, 1)], augment="cnndetection", input_policy="native")[0]["image"].shape == (
        3,
        24,
        24,
    )
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        ImageDataset([Sample(path, 1)], augment="heavy")
    with pytest.raises(ValueError, match="blur_prob"):
        Augmentation(blur_prob=1.5)


def test_argument_errors():
    with pytest.raises(ValueError, match="input_policy"):
        ImageDataset([], input_policy="resize")
    with pytest.raises(ValueError, match="crop_size"):
        ImageDataset([], crop_size=0)
