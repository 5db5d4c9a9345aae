"""The wild benchmark's quick build: splits, leak-freedom, equal processing, reproducibility, caching."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("comfyui_workflow_templates_media_image", reason="needs hrrkit[wild]")
pytest.importorskip("sklearn")

from hrrkit.datasets import wild, wild_regenerators  # noqa: E402
from hrrkit.datasets.wild import QUICK, SPLITS, VAL_SCENES, WildConfig, build_wild_benchmark  # noqa: E402
from hrrkit.datasets.wild_templates import EDITED, TEXT_TO_IMAGE  # noqa: E402
from hrrkit.retrospect.photos import source_photographs  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return build_wild_benchmark(tmp_path_factory.mktemp("wild"), quick=True, progress=False)


def _tiny(**overrides) -> WildConfig:
    base = dict(size=32, train_per_generator={"realesr-animevideov3-x4": 2}, val_per_generator={"realesr-animevideov3-x4": 1},
                test_generators=2, test_edited=1, short_side_max=96)
    return WildConfig(**{**base, **overrides})


def test_quick_build_is_complete_and_verified(bench):
    assert bench.verify() == []
    counts = bench.counts()
    assert set(counts) == set(SPLITS)
    for split, per_generator in counts.items():
        fakes = sum(n for name, n in per_generator.items() if name != "real")
        assert fakes > 0 and per_generator["real"] == fakes, (split, per_generator)
    assert counts["train"]["real"] == sum(QUICK.train_per_generator.values())
    assert counts["test_generators"]["real"] == QUICK.test_generators
    samples = bench.samples("test_generators")
    assert len(samples) == 2 * QUICK.test_generators and all(s.path.is_file() for s in samples)
    with pytest.raises(KeyError, match="splits"):
        bench.samples("test")


def test_generators_per_split(bench):
    by_split: dict[str, set[str]] = {split: set() for split in SPLITS}
    for row in bench.records():
        if row["label"] == "1":
            by_split[row["split"]].add(row["generator"])
    regenerators = set(wild_regenerators.REGENERATORS)
    assert by_split["train"] <= regenerators and by_split["val"] <= regenerators  # no real generator in training
    assert by_split["test_generators"] <= {t.generator for t in TEXT_TO_IMAGE.values()}
    assert by_split["test_edited"] <= {t.generator for t in EDITED.values()}
    assert len(by_split["test_generators"]) >= 6  # the quick selection is spread over the families


def test_no_source_photograph_in_two_splits(bench):
    rows = bench.records()
    test_scenes = {p.scene for p in source_photographs("test")}
    train_scenes = {p.scene for p in source_photographs("train")}
    for row in rows:
        if row["source"].startswith("comfyui:"):
            assert row["label"] == "1" and row["split"].startswith("test_")
            continue
        if row["split"].startswith("test_"):
            assert row["scene"] in test_scenes, row
        else:
            assert row["scene"] in train_scenes, row
            assert (row["scene"] in VAL_SCENES) == (row["split"] == "val"), row
    assert wild._check_disjoint(rows) == []
    # and the check can fail: a train scene moved into val is reported
    leaked = [dict(r) for r in rows]
    first_train = next(r for r in leaked if r["split"] == "train")
    leaked.append({**first_train, "split": "val", "path": "val/real/leak.png"})
    assert any("scene" in p for p in wild._check_disjoint(leaked))
    # the same photograph under another name is caught by its file hash
    renamed = [dict(r) for r in rows]
    renamed.append({**first_train, "split": "test_generators", "scene": "a-copy", "path": "test_generators/real/x.png"})
    assert any("source file" in p for p in wild._check_disjoint(renamed))


def _format_features(path) -> list[float]:
    from PIL import Image

    with Image.open(path) as image:
        info = image.info
        return [image.width, image.height, hash(image.format) % 997, hash(image.mode) % 997, len(info),
                float("icc_profile" in info), float("exif" in info), float(path.suffix == ".png")]


def test_equal_processing_a_size_and_format_classifier_is_at_chance(bench):
    from sklearn.metrics import roc_auc_score
    from sklearn.tree import DecisionTreeClassifier

    rows = bench.records()
    for split in SPLITS:
        mine = [r for r in rows if r["split"] == split]
        x = np.array([_format_features(bench.root / r["path"]) for r in mine])
        y = np.array([int(r["label"]) for r in mine])
        # fit and score on the same images: even memorising, nothing to separate
        tree = DecisionTreeClassifier(random_state=0).fit(x, y)
        assert roc_auc_score(y, tree.predict_proba(x)[:, 1]) == pytest.approx(0.5), split
    # the manifest's size and history columns: one distribution for both classes of every split
    for split in ("train", "val"):
        mine = [r for r in rows if r["split"] == split]
        assert {(r["native_height"], r["height"]) for r in mine} == {(str(QUICK.native), str(QUICK.size))}
        assert all(r["history"].startswith("webp-q") for r in mine)
    for split in ("test_generators", "test_edited"):
        pairs: dict[str, dict[str, str]] = {}
        for r in rows:
            if r["split"] == split:
                pairs.setdefault(r["path"].rsplit("/", 1)[1], {})[r["label"]] = r["native_height"]
        # a real crop takes its native size from its paired thumbnail: between half of it and all of it
        # (or the photograph's short side), never more
        assert all(int(p["1"]) // wild.TEST_CROP_SHRINK - 1 <= int(p["0"]) <= int(p["1"]) for p in pairs.values()), pairs


def test_finalize_is_the_same_chain_for_every_input():
    rng = np.random.default_rng(0)
    native = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    from PIL import Image

    for history in (None, 80):
        data = wild.finalize(native, history, 32)
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32)) and "icc_profile" not in image.info
    assert wild.finalize(native, 80, 32) != wild.finalize(native, None, 32)  # the history step does something
    with pytest.raises(ValueError, match="square"):
        wild.finalize(native[:, :70], None, 32)


def test_every_real_and_thumbnail_is_reproduced_from_its_manifest_row(bench):
    rows = bench.records()
    exact = [r for r in rows if r["label"] == "0" or r["source"].startswith("comfyui:")]
    for row in exact:
        assert wild._sha256(bench.reproduce(row)) == row["sha256"], row["path"]
    fake = next(r for r in rows if r["split"] == "train" and r["label"] == "1")
    again = np.asarray(Image.open(io.BytesIO(bench.reproduce(fake))), dtype=int)
    built = np.asarray(Image.open(bench.root / fake["path"]), dtype=int)
    assert np.abs(again - built).max() <= 2  # a regenerated fake alone: equal up to batched float rounding
    assert wild._Crop.from_text(fake["crop"]).to_text() == fake["crop"]


def test_reproducible_from_the_seed(tmp_path):
    first = build_wild_benchmark(tmp_path / "a", config=_tiny(), seed=3, progress=False)
    again = build_wild_benchmark(tmp_path / "b", config=_tiny(), seed=3, progress=False)
    other = build_wild_benchmark(tmp_path / "c", config=_tiny(), seed=4, progress=False)
    hashes = [[r["sha256"] for r in b.records()] for b in (first, again, other)]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]
    assert first.manifest.read_bytes() == again.manifest.read_bytes()


def test_cache_reuse_corruption_and_partial_builds(tmp_path):
    built = build_wild_benchmark(tmp_path, config=_tiny(), progress=False)
    reused = build_wild_benchmark(tmp_path, config=_tiny(), progress=False)
    assert not built.reused and reused.reused and reused.root == built.root
    victim = built.root / built.records("val")[0]["path"]
    victim.write_bytes(b"not a png")
    assert any("SHA-256" in p for p in built.verify())
    rebuilt = build_wild_benchmark(tmp_path, config=_tiny(), progress=False)
    assert not rebuilt.reused and rebuilt.verify() == []

    def broken(crops, rng):
        raise RuntimeError("regenerator crashed")

    wild_regenerators.register_regenerator("test-broken", broken, description="fails", replace=True)
    try:
        with pytest.raises(RuntimeError, match="crashed"):
            build_wild_benchmark(tmp_path, config=_tiny(train_per_generator={"test-broken": 1}), progress=False)
    finally:
        del wild_regenerators.REGENERATORS["test-broken"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.root.name]  # no partial folder, no half build


def test_a_registered_regenerator_is_one_call(tmp_path):
    calls = []

    def invert(crops, rng):
        calls.append(crops.shape)
        return 255 - crops

    wild_regenerators.register_regenerator("test-invert", invert, description="colour inversion", version="t1")
    try:
        with pytest.raises(ValueError, match="already registered"):
            wild_regenerators.register_regenerator("test-invert", invert, description="again")
        bench = build_wild_benchmark(tmp_path, config=_tiny(train_per_generator={"test-invert": 3}), progress=False)
        assert bench.counts()["train"] == {"real": 3, "test-invert": 3}
        assert calls and calls[0][1:] == (64, 64, 3)  # regenerators work at the native size, 2 x 32
        assert bench.info["inputs"]["regenerators"]["test-invert"]["version"] == "t1"
    finally:
        del wild_regenerators.REGENERATORS["test-invert"]
    with pytest.raises(ValueError, match="unknown regenerators"):
        _tiny(train_per_generator={"test-invert": 1})


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_user_folder_photographs_join_by_their_role(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    # a copy of a held-out catalogue photograph must not become a training photograph
    from hrrkit.retrospect.photos import photo_path

    (folder / "my_coffee.png").write_bytes(photo_path("coffee").read_bytes())
    bench = build_wild_benchmark(tmp_path / "out", config=_tiny(train_per_generator={"realesr-animevideov3-x4": 12}),
                                 real_dirs=[folder], progress=False)
    rows = bench.records()
    assert any(r["source"].startswith("user:") for r in rows)
    coffee = photo_path("coffee")
    assert not any(r["source"].startswith("user:") and r["origin_sha256"] == _sha(coffee) for r in rows)
    assert bench.verify() == []
    with open(bench.manifest, newline="") as handle:
        assert "origin_sha256" in next(csv.reader(handle))


def test_a_retrospector_is_a_regenerator(tmp_path):
    from hrrkit.retrospect.pixel_ddim import PixelDDIMRetrospector
    from hrrkit.retrospect.tiny import tiny_pixel_unet

    def make():
        return PixelDDIMRetrospector(tiny_pixel_unet(), mode="one_step", timestep=200, seed=0)

    fn = wild_regenerators.retrospector_regenerator(make)
    crops = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    out = fn(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and out.dtype == np.uint8 and not np.array_equal(out, crops)
    assert np.array_equal(out, fn(crops, np.random.default_rng(1)))  # deterministic
    wild_regenerators.register_regenerator("test-tiny-unet", fn, description="tiny random UNet, one step")
    try:
        bench = build_wild_benchmark(tmp_path, config=_tiny(train_per_generator={"test-tiny-unet": 2}), progress=False)
        assert bench.counts()["train"] == {"real": 2, "test-tiny-unet": 2} and bench.verify() == []
    finally:
        del wild_regenerators.REGENERATORS["test-tiny-unet"]


def test_the_shipped_real_photo_diffusion_model_regenerates():
    # the weights ship in the package (hrrkit/retrospect/weights/): their absence is a packaging bug, not a skip
    assert wild_regenerators.SHIPPED_REGENERATORS, "the real-photo diffusion regenerators did not register"
    assert set(wild_regenerators.SHIPPED_REGENERATORS) <= set(wild.FULL.train_per_generator)
    crops = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    for name in wild_regenerators.SHIPPED_REGENERATORS:
        entry = wild_regenerators.REGENERATORS[name]
        assert entry.family == "real-photo-diffusion" and entry.version.startswith("weights-")
        out = wild_regenerators.regenerate(name, crops, np.random.default_rng(0))
        assert out.shape == crops.shape and not np.array_equal(out, crops)
