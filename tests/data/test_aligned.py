"""Aligned data (``hrrkit data align``): sizes, names, resume, JPEG matching, paired augmentation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.data.aligned import build_aligned_dataset, pair_keys
from hrrkit.data.dataset import ImageDataset, SizeBucketBatchSampler
from hrrkit.data.jpeg import estimate_jpeg_quality, jpeg_round_trip, jpeg_settings
from hrrkit.data.layouts import read_layout
from hrrkit.retrospect.aligned import AutoencoderSpec, crop_to_multiple, load_autoencoders
from hrrkit.testing.aligned import save_tiny_autoencoders, write_photos


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than the work on 2 shared cores
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def autoencoders(tmp_path_factory):
    paths = save_tiny_autoencoders(tmp_path_factory.mktemp("ae"))
    return load_autoencoders([str(p) for p in paths.values()])


@pytest.fixture()
def photos(tmp_path):
    write_photos(tmp_path / "photos", count=4, png=1)
    return tmp_path / "photos"


def _pngs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_sizes_kept_at_multiples_of_8_and_pairs_named_alike(tmp_path, photos, autoencoders):
    assert {r.codec.vae.config.latent_channels for r in autoencoders.values()} == {4, 16}
    out = tmp_path / "aligned"
    summary = build_aligned_dataset(photos, autoencoders, out, val_fraction=0.3, test_fraction=0.3, progress=False)
    assert summary.photos == 5 and not summary.failed and summary.written == 5 * 3
    samples = read_layout(out)  # the flat layout, read as any recipe reads it
    reals = [s for s in samples if s.label == 0]
    assert len(reals) == 5 and {s.generator for s in samples if s.label == 1} == {"ae4", "ae16"}
    manifest = json.loads((out / "aligned.json").read_text())
    for real in reals:
        split_dir = real.path.parents[len(real.path.relative_to(out).parts) - 2]
        rel = real.path.relative_to(split_dir / "real")
        with Image.open(real.path) as img:
            size = img.size
        record = manifest["images"][rel.with_suffix("").as_posix()]
        h0, w0 = record["original_size"]
        assert size == (w0 - w0 % 8, h0 - h0 % 8) and size[0] % 8 == 0 and size[1] % 8 == 0
        for name in ("ae4", "ae16"):
            with Image.open(split_dir / "fake" / name / rel) as fake:
                assert fake.size == size and fake.format == "PNG"
        assert set(record["seconds"]) == {"ae4", "ae16"} and all(s > 0 for s in record["seconds"].values())
    # the real is the photo's top-left window, pixel for pixel (lossless, no resize)
    source = photos / manifest["images"]["photo4"]["source"]
    real_png = next(p for p in out.rglob("real/photo4.png"))
    assert np.array_equal(np.asarray(Image.open(real_png)), crop_to_multiple(np.asarray(Image.open(source)), 8))
    assert manifest["summary"]["seconds_per_image"].keys() == {"ae4", "ae16"}


def test_rerun_skips_what_exists_and_a_crash_leaves_no_partial_file(tmp_path, photos, autoencoders, monkeypatch):
    import hrrkit.retrospect.aligned as aligned

    out = tmp_path / "aligned"
    real_recon = aligned.reconstruct_uint8
    calls = {"n": 0}

    def failing(retrospector, array):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed in the middle of the job
        return real_recon(retrospector, array)

    monkeypatch.setattr(aligned, "reconstruct_uint8", failing)
    with pytest.raises(KeyboardInterrupt):
        build_aligned_dataset(photos, autoencoders, out, progress=False)
    written = _pngs(out)
    assert len(written) == 3 + 2  # the first photo complete, the second's real and first reconstruction
    assert not [p for p in out.rglob("*") if p.is_file() and p.name.startswith(".")]  # no temporaries left
    monkeypatch.setattr(aligned, "reconstruct_uint8", real_recon)
    before = {p: (out / p).stat().st_mtime_ns for p in written}
    summary = build_aligned_dataset(photos, autoencoders, out, progress=False)
    assert summary.skipped_existing == 1 and summary.written == 15 - len(written)
    assert all((out / p).stat().st_mtime_ns == t for p, t in before.items())  # nothing rewritten
    again = build_aligned_dataset(photos, autoencoders, out, progress=False)
    assert again.skipped_existing == 5 and again.written == 0
    assert len(json.loads((out / "aligned.json").read_text())["images"]) == 5
    with pytest.raises(ValueError, match="jpeg_match"):  # a rerun may not change what the files mean
        build_aligned_dataset(photos, autoencoders, out, jpeg_match=True, progress=False)


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 95])
def test_quality_estimated_from_the_quantisation_tables(quality):
    buffer = io.BytesIO()
    rgb = (np.random.default_rng(quality).random((24, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        assert estimate_jpeg_quality(img.quantization) == (quality, 0)
    buffer.seek(0)
    with Image.open(buffer) as grey_source:
        grey = io.BytesIO()
        grey_source.convert("L").save(grey, "JPEG", quality=quality)  # one table only
    grey.seek(0)
    with Image.open(grey) as img:
        assert estimate_jpeg_quality(img.quantization)[0] == quality


def test_jpeg_matching_gives_the_reconstruction_its_photo_quality(tmp_path, autoencoders):
    photos = tmp_path / "photos"
    write_photos(photos, count=2, png=1, quality=60, subfolder=None)
    assert jpeg_settings(photos / "photo0.jpg").quality == 60 and jpeg_settings(photos / "photo2.png") is None
    ae4 = {"ae4": autoencoders["ae4"]}
    plain, matched = tmp_path / "plain", tmp_path / "matched"
    build_aligned_dataset(photos, ae4, plain, val_fraction=0, test_fraction=0, progress=False)
    build_aligned_dataset(photos, ae4, matched, jpeg_match=True, val_fraction=0, test_fraction=0, progress=False)
    record = json.loads((matched / "aligned.json").read_text())["images"]
    assert record["photo0"]["jpeg"]["quality"] == 60 and record["photo0"]["jpeg"]["subsampling_name"] == "4:2:0"
    assert record["photo2"]["jpeg"] is None
    settings = jpeg_settings(photos / "photo0.jpg")
    raw = np.asarray(Image.open(plain / "train/fake/ae4/photo0.png"))
    got = np.asarray(Image.open(matched / "train/fake/ae4/photo0.png"))
    assert np.array_equal(got, jpeg_round_trip(raw, settings))  # compressed at the photo's quality
    assert not np.array_equal(got, raw)
    # the stored pixels are a quality-60 JPEG: re-encoding them at 60 moves them less than at 30
    err = {q: np.abs(jpeg_round_trip(got, settings.__class__(q, 2, 0)).astype(int) - got).mean() for q in (30, 60)}
    assert err[60] < err[30]
    # the PNG photo's reconstruction is stored as reconstructed
    assert np.array_equal(np.asarray(Image.open(matched / "train/fake/ae4/photo2.png")),
                          np.asarray(Image.open(plain / "train/fake/ae4/photo2.png")))


def test_paired_augmentation_gives_both_members_one_crop_and_transform(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "aligned" / "train"
    for i in range(6):  # the "reconstruction" is the photo itself: a paired item must come out equal
        pixels = (rng.random((40, 52, 3)) * 255).astype(np.uint8)
        for folder in ("real", "fake/ae"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / folder / f"p{i}.png")
    samples = read_layout(tmp_path / "aligned")
    keys = pair_keys(samples)
    assert len(set(keys)) == 6 and sorted(keys) == sorted(f"train:p{i}" for i in range(6) for _ in range(2))
    paired = ImageDataset(samples, input_policy="random_crop", crop_size=24, augment="cnnspot", seed=3, pair_keys=keys)
    unpaired = ImageDataset(samples, input_policy="random_crop", crop_size=24, augment="cnnspot", seed=3)
    for epoch in (0, 1):
        paired.set_epoch(epoch)
        unpaired.set_epoch(epoch)
        by_key: dict[str, list] = {}
        for i, key in enumerate(keys):
            by_key.setdefault(key, []).append(i)
        same_unpaired = 0
        for real, fake in by_key.values():
            assert paired.crop_rng(real).random() == paired.crop_rng(fake).random()  # one crop box
            assert torch.equal(paired[real]["image"], paired[fake]["image"])  # crop, blur, JPEG and flip alike
            same_unpaired += torch.equal(unpaired[real]["image"], unpaired[fake]["image"])
        assert same_unpaired < len(by_key)  # without pair keys the draws differ
    # the sampler keeps each pair in one batch, and still covers every item once
    sampler = SizeBucketBatchSampler(paired.header_sizes(), 4, shuffle=True, seed=1, groups=keys)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(samples)))
    for batch in batches:
        assert len(batch) <= 4 and all(sum(keys[j] == keys[i] for j in batch) == 2 for i in batch)


def test_autoencoder_specs_name_their_folders(tmp_path):
    assert AutoencoderSpec("/models/sd15").name == "sd15"
    assert AutoencoderSpec("/models/sd15/vae").name == "sd15"
    assert AutoencoderSpec("/models/ae.safetensors").name == "ae"
    spec = AutoencoderSpec("flux=/models/FLUX.1-dev")
    assert (spec.name, spec.path.as_posix()) == ("flux", "/models/FLUX.1-dev")
    with pytest.raises(ValueError, match="named"):
        load_autoencoders(["/a/sd15", "/b/sd15"])


def test_large_photos_are_reconstructed_in_tiles_at_full_size(tmp_path, photos):
    ae_dir = save_tiny_autoencoders(tmp_path / "ae")["ae4"]
    tiled = load_autoencoders([f"ae4={ae_dir}"], tile_size=16, tile_overlap=4)
    whole = load_autoencoders([f"ae4={ae_dir}"], tile_size=None)
    assert tiled["ae4"].cost((48, 56)).tiles > 1 and whole["ae4"].cost((48, 56)).tiles == 1
    for name, aes in (("tiled", tiled), ("whole", whole)):
        build_aligned_dataset(photos, aes, tmp_path / name, val_fraction=0, test_fraction=0, progress=False)
    for real in (tmp_path / "whole" / "train" / "real").rglob("*.png"):
        rel = real.relative_to(tmp_path / "whole" / "train" / "real")
        a = np.asarray(Image.open(tmp_path / "tiled" / "train" / "fake" / "ae4" / rel))
        b = np.asarray(Image.open(tmp_path / "whole" / "train" / "fake" / "ae4" / rel))
        assert a.shape == b.shape == np.asarray(Image.open(real)).shape
    assert not np.array_equal(a, b)  # the tiles were really reconstructed apart


def test_a_jpeg_whose_settings_cannot_be_read_is_stored_unmatched_with_a_note(tmp_path, autoencoders, monkeypatch):
    import hrrkit.data.aligned as aligned

    write_photos(tmp_path / "photos", count=1, png=0, subfolder=None)

    def unreadable(path):
        raise ValueError("expected 8x8 quantisation tables")

    monkeypatch.setattr(aligned, "jpeg_settings", unreadable)
    out = tmp_path / "out"
    summary = build_aligned_dataset(tmp_path / "photos", {"ae4": autoencoders["ae4"]}, out, jpeg_match=True,
                                    val_fraction=0, test_fraction=0, progress=False)
    record = json.loads((out / "aligned.json").read_text())["images"]["photo0"]
    assert summary.written == 2 and record["jpeg"] is None and "8x8" in record["note"]
