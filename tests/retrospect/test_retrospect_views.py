"""Retrospection as a cached per-image stage: the cached and in-forward paths agree, the key tracks
every setting, a second epoch makes no retrospector call, bad entries and failing images are handled,
and training (also under torchrun) reads a cache another run filled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.data.dataset import ImageDataset
from hrrkit.data.layouts import Sample
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage, fill_view_cache

ROOT = Path(__file__).resolve().parents[2]


def _samples(folder: Path, n: int = 6, sizes=((40, 40), (36, 44))) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC))
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(path=path, label=i % 2))
    return samples


def _config(kind: str = "pixel_ddim", **changes) -> DetectorConfig:
    base = {"retrospector.kind": kind, "backbone.options": {"width": 4, "depth": 2}, "style.levels": [1, 2]}
    if kind == "pixel_ddim":
        base["retrospector.path"] = "hrrkit:real-photo-unet"
    return DetectorConfig().replace(**{**base, **changes})


class _Counting:
    """Counts calls of the wrapped retrospector (what a second epoch must not make)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, images):
        self.calls += 1
        return self.inner(images)


def test_cached_and_in_forward_paths_give_the_same_tensors(tmp_path):
    samples = _samples(tmp_path / "imgs")
    model = HRRDetector(_config()).eval()
    base = ImageDataset(samples, input_policy="native")
    cached = RetrospectedDataset(base, RetrospectionStage(model), tmp_path / "cache", store_dtype="float32")
    for rows in ([0, 2, 4], [1, 3]):  # one batch per native size
        batch = cached.collate([cached[i] for i in rows])
        images = torch.stack([base[i]["image"] for i in rows])
        with torch.no_grad():
            direct = model(images)
            via_cache = model(batch["images"])
        for s in range(3):
            torch.testing.assert_close(via_cache.msr.backbone_inputs[s][0], direct.msr.backbone_inputs[s][0],
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(via_cache.msr.descriptors[s], direct.msr.descriptors[s], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(via_cache.logits, direct.logits, atol=1e-4, rtol=1e-4)


def test_a_second_epoch_makes_no_retrospector_call_and_crops_are_joint(tmp_path):
    samples = _samples(tmp_path / "imgs")
    model = HRRDetector(_config())
    counting = _Counting(model.msr.retrospector)
    model.msr.retrospector = counting
    stage = RetrospectionStage(model, dither=True)
    base = ImageDataset(samples, input_policy="random_crop", crop_size=24, seed=1)
    data = RetrospectedDataset(base, stage, tmp_path / "cache")
    calls = []
    first_crops = None
    for epoch in range(2):
        data.set_epoch(epoch)
        before = counting.calls
        batch = data.collate([data[i] for i in range(len(data))])
        model.train()(batch["images"])  # the forward does not call the retrospector either
        calls.append(counting.calls - before)
        views = batch["images"]
        assert [g.shape[-1] for g in (views.enhanced[s][0] for s in range(3))] == [12, 24, 48]
        if epoch == 0:
            first_crops = views.boxes[1][0].clone()
    assert calls == [len(samples) * 3, 0]
    assert data.stats == {"hits": len(samples), "misses": len(samples), "recomputed_corrupt": 0}
    assert not torch.equal(views.boxes[1][0], first_crops), "a new epoch draws new crops"
    # the crop of x̃ and of x̂ is the same window of the cached pair
    item = data[0]
    tensors, _ = data.pairs(0)
    t, left, h, w = item["boxes"][1]
    torch.testing.assert_close(item["views"][1][1], tensors["reconstruction_1"][:, t:t + h, left:left + w].float())


def test_the_cache_key_changes_with_every_setting_that_changes_a_pair(tmp_path):
    samples = _samples(tmp_path / "imgs", n=2)
    base = ImageDataset(samples, input_policy="native")

    def folder(config: DetectorConfig, **stage) -> str:
        return RetrospectedDataset(base, RetrospectionStage(HRRDetector(config), **stage), tmp_path).cache.config_hash

    reference = folder(_config())
    changed = {
        "steps": folder(_config(**{"retrospector.options": {"strength": 0.05}})),
        "scales": folder(_config(**{"rescale.scales": [1.0, 2.0]})),
        "dither std": folder(_config(**{"rescale.dither_std": 0.02}), dither=True),
        "dither on": folder(_config(), dither=True),
        "dither seed": folder(_config(), dither=True, seed=5),
        "line beta": folder(_config(**{"line.beta": 0.25})),
        "line off": folder(_config(**{"line.enabled": False})),
        "retrospector": folder(_config("blur")),
        "blur sigma": folder(_config("blur", **{"retrospector.blur_sigma": 2.0})),
    }
    assert len({reference, *changed.values()}) == len(changed) + 1, changed
    reencoded = ImageDataset(samples, input_policy="native", reencode="jpeg:90")
    model = HRRDetector(_config())
    assert RetrospectedDataset(reencoded, RetrospectionStage(model), tmp_path).cache.config_hash != reference
    # the backbone, head and crop size do not change a pair: the same cache serves them all
    assert folder(_config(**{"backbone.options": {"width": 8, "depth": 2}})) == reference


def test_corrupt_or_foreign_entries_are_recomputed_and_a_failing_image_is_skipped(tmp_path):
    samples = _samples(tmp_path / "imgs", n=3)
    model = HRRDetector(_config("blur"))
    data = RetrospectedDataset(ImageDataset(samples, input_policy="native"), RetrospectionStage(model), tmp_path / "c")
    fill_view_cache(data)
    from hrrkit.retrospect.cache import file_content_hash

    entry = data.cache.entry_path(file_content_hash(samples[0].path))
    entry.write_bytes(entry.read_bytes()[:-9])  # truncated
    good = data.cache.entry_path(file_content_hash(samples[1].path)).read_bytes()
    data[0]
    assert data.stats["recomputed_corrupt"] == 1 and data.cache.status(file_content_hash(samples[0].path)) == "ok"

    class Broken:
        def __call__(self, images):
            raise RuntimeError("out of memory on this image")

    stage = RetrospectionStage(model)
    stage.retrospector = Broken()
    broken = RetrospectedDataset(ImageDataset(samples, input_policy="native"), stage, tmp_path / "c")
    broken.cache = data.cache  # same folder, so entries 0 and 1 are hits
    data.cache.remove(file_content_hash(samples[2].path))  # a miss: the broken retrospector must run
    item = broken[2]
    assert "retrospection failed: out of memory" in item["skipped"]["reason"]
    batch = broken.collate([broken[0], broken[1], item])
    assert len(batch["skipped"]) == 1 and batch["images"].num_images == 2
    assert data.cache.entry_path(file_content_hash(samples[1].path)).read_bytes() == good


def test_fit_reads_a_filled_cache_and_makes_no_retrospector_call(tmp_path):
    from hrrkit.train.config import TrainConfig
    from hrrkit.train.trainer import fit

    samples = _samples(tmp_path / "imgs", n=8, sizes=((40, 40),))
    config = _config(**{"input.policy": "random_crop", "input.crop_size": 24})
    model = HRRDetector(config)
    counting = _Counting(model.msr.retrospector)
    model.msr.retrospector = counting
    data = RetrospectedDataset(ImageDataset(samples, input_policy="random_crop", crop_size=24),
                               RetrospectionStage(model, dither=True), tmp_path / "cache")
    fill_view_cache(data)
    filled = counting.calls
    train = TrainConfig(epochs=2, batch_size=4, lr=1e-3, early_stopping_patience=0, log_every=1)
    result = fit(model, data, None, train, tmp_path / "run", progress=False, resume=False)
    assert counting.calls == filled == 8 * 3, "training read every pair from the cache"
    assert len(result.history) == 2


@pytest.mark.slow
def test_torchrun_training_reads_a_cache_another_run_filled(tmp_path):
    samples = _samples(tmp_path / "imgs", n=8, sizes=((40, 40),))
    model = HRRDetector(_config("blur"))
    data = RetrospectedDataset(ImageDataset(samples, input_policy="center_crop", crop_size=24),
                               RetrospectionStage(model), tmp_path / "cache")
    fill_view_cache(data)
    script = tmp_path / "ranks.py"
    script.write_text(f"""
import torch.distributed as dist
from pathlib import Path
from hrrkit.data.dataset import ImageDataset
from hrrkit.data.layouts import Sample
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.retrospect.views import RetrospectedDataset, RetrospectionStage
from hrrkit.train.config import TrainConfig
from hrrkit.train.trainer import fit
config = DetectorConfig().replace(**{{"retrospector.kind": "blur", "backbone.options": {{"width": 4, "depth": 2}},
                                     "style.levels": [1, 2]}})
model = HRRDetector(config)
samples = [Sample(path=Path(p), label=i % 2) for i, p in enumerate({[str(s.path) for s in samples]!r})]
data = RetrospectedDataset(ImageDataset(samples, input_policy="center_crop", crop_size=24),
                           RetrospectionStage(model), {str(tmp_path / "cache")!r})
fit(model, data, None, TrainConfig(epochs=1, batch_size=2, early_stopping_patience=0), {str(tmp_path / "run")!r},
    progress=False, resume=False)
assert data.stats["misses"] == 0 and data.stats["hits"] > 0, data.stats
print("rank-ok", dist.get_rank() if dist.is_initialized() else 0, data.stats)
""")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("rank-ok") == 2


@pytest.mark.slow
def test_hrrkit_train_with_a_retrospection_cache_reads_it_in_a_rerun(tmp_path):
    import yaml

    from hrrkit.cli import main
    from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout

    root = write_synthetic_layout(tmp_path / "data", "flat", per_class=4, seed=3)
    config = tiny_run_config(root, tmp_path / "run", epochs=2, train={"batch_size": 4, "retrospection_cache": "cache"},
                             detector={"input": {"policy": "random_crop", "crop_size": 24, "augment": "none"}})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "run.yaml"), "--no-progress", "--restart"]) == 0
    folders = list((tmp_path / "cache").iterdir())  # relative to the run config; train and eval pairs apart
    assert len(folders) == 2 and all(len(list((f / "entries").glob("*/*.safetensors"))) for f in folders)
    entries = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/entries/*/*.safetensors")}
    assert main(["train", str(tmp_path / "run.yaml"), "--no-progress", "--restart"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/entries/*/*.safetensors")} == entries
    # hrrkit eval reads the evaluation pairs that training's validation and test report stored
    split = "test" if any((root / "test").iterdir()) else None
    args = ["eval", str(root), "--model", str(tmp_path / "run" / "best"), "--retrospection-cache",
            str(tmp_path / "cache"), "--no-progress", "--out", str(tmp_path / "eval")]
    assert main(args + (["--split", split] if split else [])) == 0
    assert "retrospector: blur σ=1 px (ablation" in (tmp_path / "eval" / "report.md").read_text()
    assert "retrospector: blur" in (tmp_path / "run" / "test_report" / "report.md").read_text()
    if split:
        assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/entries/*/*.safetensors")} == entries
