"""Fitting a detector's head on cached descriptors of its frozen front end (hrrkit.train.frozen)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.data.augment import PRESETS, Delivery
from hrrkit.models.config import DetectorConfig
from hrrkit.models.detector import HRRDetector
from hrrkit.train.frozen import Descriptors, FrozenFitConfig, describe, fit_head, front_end_fingerprint, scores_of

FRONT = {
    "input.crop_size": 28, "rescale.scales": (0.5, 1.0), "rescale.dither_std": 0.0, "line.enabled": False,
    "retrospector.kind": "none", "retrospector.input": "image", "style.pixel_residual_stats": False,
    "style.levels": (1,), "style.descriptor": "style", "backbone.name": "dinov2_vits14",
    "backbone.options": {"pretrained": False, "frozen": True, "blocks": [1, 2]},
}


def _detector(**changes) -> HRRDetector:
    torch.manual_seed(0)
    return HRRDetector(DetectorConfig(name="probe").replace(**{**FRONT, **changes}))


def _images(tmp_path, n=8, seed=0):
    """Real = smooth colour ramps, generated = the same ramps with a checkerboard: separable by texture."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(n):
        ramp = np.linspace(0, 1, 28)[None, :, None] * rng.uniform(60, 200, size=(1, 1, 3))
        img = np.repeat(ramp, 28, axis=0) + rng.normal(0, 2, size=(28, 28, 3))
        label = i % 2
        if label:
            img += 40 * ((np.indices((28, 28)).sum(0) % 2)[..., None] - 0.5)
        path = tmp_path / f"{i:02d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
        labels.append(label)
    return paths, labels


def test_describe_rows_are_copy_major_and_cached(tmp_path):
    detector = _detector()
    paths, labels = _images(tmp_path)
    cache = tmp_path / "cache"
    first = describe(detector, paths, labels, copies=2, cache_dir=cache, progress=False)
    assert first.values.shape == (3 * len(paths), 2, detector.descriptor_dim)
    assert first.labels.tolist() == labels * 3 and first.paths[len(paths)] == str(paths[0])
    # copy 0 is the file as it is: the detector's own front end on it gives the same descriptors
    with torch.no_grad():
        out = detector.msr([detector.preprocess(p)[0] for p in paths])
    torch.testing.assert_close(first.values[: len(paths)], torch.stack(out.descriptors, 1))
    # augmented copies differ from the clean file; the second call reads every row from the cache
    assert not torch.allclose(first.values[: len(paths)], first.values[len(paths): 2 * len(paths)])
    calls = []
    detector.msr.register_forward_hook(lambda *a: calls.append(1))
    again = describe(detector, paths, labels, copies=2, cache_dir=cache, progress=False)
    assert not calls
    torch.testing.assert_close(again.values, first.values)


def test_augmented_copies_are_seeded(tmp_path):
    detector = _detector()
    paths, labels = _images(tmp_path, n=2)
    a = describe(detector, paths, labels, copies=1, seed=3, progress=False)
    b = describe(detector, paths, labels, copies=1, seed=3, progress=False)
    c = describe(detector, paths, labels, copies=1, seed=4, progress=False)
    torch.testing.assert_close(a.values, b.values)
    assert not torch.allclose(a.values[2:], c.values[2:])


def test_the_front_end_fingerprint_ignores_the_head_only():
    a, b = _detector(), _detector(**{"head.kind": "linear", "threshold": 0.3})
    assert front_end_fingerprint(a) == front_end_fingerprint(b)
    assert front_end_fingerprint(a) != front_end_fingerprint(_detector(**{"rescale.scales": (1.0,)}))


@pytest.mark.parametrize("head", ["additive", "linear"])
def test_fit_head_learns_a_separable_problem_and_keeps_the_best_epoch(tmp_path, head):
    detector = _detector(**{"head.kind": head})
    paths, labels = _images(tmp_path, n=16)
    data = describe(detector, paths, labels, copies=0, progress=False)
    train = Descriptors(data.values[:10], data.labels[:10], data.weights[:10], data.paths[:10])
    val = Descriptors(data.values[10:], data.labels[10:], data.weights[10:], data.paths[10:])
    result = fit_head(detector, train, val, FrozenFitConfig(copies=0, epochs=60, lr=1e-2), eval_every=5, progress=False)
    assert result.val_auc == 1.0
    assert 1 <= result.best_epoch <= 60 and len(result.history) == 60
    best = [r for r in result.history if r["epoch"] == result.best_epoch][0]
    assert best["val_auc"] == result.val_auc
    # the head now holds the best epoch's weights: scoring val again gives that AUC
    scores = scores_of(detector, val.values)
    assert ((scores[val.labels == 1].min() > scores[val.labels == 0].max()).item())


def test_the_afr_head_fits_the_same_with_its_basis_expanded_once(tmp_path, monkeypatch):
    """fit_head expands the AFR basis once (its input never changes in full-batch training); the head it
    trains, its running statistics and its history match the plain forward run every epoch."""
    import hrrkit.train.frozen as frozen

    paths, labels = _images(tmp_path, n=12)
    data = describe(_detector(), paths, labels, copies=0, progress=False)
    train = Descriptors(data.values[:8], data.labels[:8], data.weights[:8], data.paths[:8])
    val = Descriptors(data.values[8:], data.labels[8:], data.weights[8:], data.paths[8:])
    config = FrozenFitConfig(copies=0, epochs=25, lr=1e-2)
    fast = _detector(**{"loss.sparsity": 1e-3})
    fast_result = fit_head(fast, train, val, config, eval_every=5, progress=False)
    monkeypatch.setattr(frozen, "_fixed_input_logits", lambda head, a, b: lambda: (head(a), head(b)))
    plain = _detector(**{"loss.sparsity": 1e-3})
    plain_result = fit_head(plain, train, val, config, eval_every=5, progress=False)
    for (name, a), (_, b) in zip(fast.head.state_dict().items(), plain.head.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert fast_result.best_epoch == plain_result.best_epoch
    for a, b in zip(fast_result.history, plain_result.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_fit_config_names_bad_values():
    with pytest.raises(ValueError, match="augment"):
        FrozenFitConfig(copies=1, augment="nope")
    with pytest.raises(ValueError, match="epochs"):
        FrozenFitConfig(epochs=0)


def test_delivery_draws_each_chain_and_keeps_the_image_usable():
    img = Image.fromarray((np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    sizes = {PRESETS["delivery"](img, random.Random(s)).size for s in range(30)}
    assert (80, 64) in sizes and any(w < 80 for w, _ in sizes)  # re-encodes keep the size, downscales shrink it
    assert all(40 <= w <= 72 for w, h in sizes if w < 80)  # factor 0.5-0.9
    assert PRESETS["delivery"] == Delivery() and not Delivery().is_identity


def test_describe_together_equals_describe_alone_and_reads_each_image_once(tmp_path, monkeypatch):
    import hrrkit.train.frozen as frozen

    style, means = _detector(), _detector(**{"style.enabled": False, "rescale.scales": (1.0,)})
    paths, labels = _images(tmp_path, n=5)
    alone = [describe(d, paths, labels, copies=1, progress=False) for d in (style, means)]
    reads = []
    real_load = frozen.load_image
    monkeypatch.setattr(frozen, "load_image", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    cache = tmp_path / "cache"
    together = frozen.describe_together([style, means], paths, labels, copies=1, cache_dir=cache, batch_size=2,
                                        progress=False)
    assert len(reads) == 2 * len(paths)  # each file once per copy, for both detectors
    for a, t in zip(alone, together):
        torch.testing.assert_close(t.values, a.values)
        assert t.labels.tolist() == a.labels.tolist() and t.paths == a.paths
    # one detector's cache is complete: only the other one's rows are computed
    (removed,) = [p for p in (cache / front_end_fingerprint(means) / "clean").iterdir()][:1]
    removed.unlink()
    reads.clear()
    again = frozen.describe_together([style, means], paths, labels, copies=1, cache_dir=cache, progress=False)
    assert len(reads) == 1
    torch.testing.assert_close(again[1].values, alone[1].values)


@pytest.mark.parametrize("head", [{"head.kind": "linear", "loss.correntropy": 0.0, "loss.sparsity": 0.0},
                                  {"head.kind": "additive"}], ids=["linear", "additive"])
def test_a_zero_initialised_head_fits_the_same_for_every_seed(tmp_path, head):
    """Why ``hrrkit demo`` fits a frozen detector's head once: the seed does not change the fit."""
    detector = _detector(**head)
    paths, labels = _images(tmp_path)
    train = describe(detector, paths, labels, copies=1, progress=False)
    states = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        detector.head = detector.config.head.build(detector.descriptor_dim, detector.config.loss)
        fit_head(detector, train, train, FrozenFitConfig(copies=1, epochs=10, seed=seed), progress=False)
        states.append({k: v.clone() for k, v in detector.head.state_dict().items()})
    for state in states[1:]:
        for key, value in state.items():
            assert torch.equal(value, states[0][key]), key
