"""Frozen-backbone feature cache: each view computed once (memory and disk), keyed by content and
weights, rounded the same way on a hit and a miss."""

from __future__ import annotations

import pytest
import torch

from hrrkit.models import build_backbone
from hrrkit.models.feature_cache import FeatureCache, state_fingerprint, view_content_hash


def _backbone(**options):
    return build_backbone("efficientnet_lite0", pretrained=True, frozen=True, out_index=2, **options)


def test_memory_cache_computes_each_view_once_and_matches_direct_features():
    backbone = _backbone(feature_cache="memory")
    plain = _backbone()
    x = torch.rand(3, 3, 24, 20) * 2 - 1
    first = backbone(x)
    again = backbone(x)
    assert backbone.feature_cache.stats()["hits"] == 3 and backbone.feature_cache.stats()["misses"] == 3
    torch.testing.assert_close(first, again, rtol=0, atol=0)  # a hit returns exactly what the miss returned
    with torch.no_grad():
        direct = plain(x)
    torch.testing.assert_close(first, direct.half().float(), rtol=0, atol=0)  # float16-rounded features
    # a batch mixing cached and new views keeps its order
    y = torch.rand(1, 3, 24, 20)
    mixed = backbone(torch.cat([x[1:2], y, x[0:1]]))
    torch.testing.assert_close(mixed[0], first[1])
    torch.testing.assert_close(mixed[2], first[0])
    assert backbone.feature_cache.stats()["misses"] == 4


def test_disk_cache_is_read_back_by_a_new_process_and_recovers_from_corruption(tmp_path):
    x = torch.rand(2, 3, 16, 16)
    first = _backbone(feature_cache=str(tmp_path))(x)
    reader = _backbone(feature_cache=str(tmp_path))
    torch.testing.assert_close(reader(x), first, rtol=0, atol=0)
    assert reader.feature_cache.stats()["misses"] == 0
    # damage one entry on disk: it is detected, recomputed and rewritten
    entry = next(tmp_path.glob("*/entries/*/*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:-8] + b"\x00" * 8)
    fresh = _backbone(feature_cache=str(tmp_path))
    torch.testing.assert_close(fresh(x), first, rtol=0, atol=0)
    assert fresh.feature_cache.stats()["misses"] == 1


def test_other_weights_or_level_never_reuse_entries(tmp_path):
    a = _backbone(feature_cache=str(tmp_path))
    a(torch.zeros(1, 3, 8, 8))
    other = _backbone(feature_cache=str(tmp_path))
    with torch.no_grad():
        other.body.stem.conv.weight.mul_(2)
    other.load_state_dict(other.state_dict())  # what loading a checkpoint does: the fingerprint is rebuilt
    other(torch.zeros(1, 3, 8, 8))
    deeper = build_backbone("efficientnet_lite0", pretrained=True, frozen=True, out_index=3, feature_cache=str(tmp_path))
    deeper(torch.zeros(1, 3, 8, 8))
    assert len({p.parent.name for p in tmp_path.glob("*/entries")}) == 3
    assert state_fingerprint(a.body) != state_fingerprint(other.body)


def test_cache_needs_a_frozen_backbone_and_skips_inputs_that_need_gradients():
    with pytest.raises(ValueError, match="frozen=True"):
        build_backbone("efficientnet_lite0", pretrained=False, feature_cache="memory")
    backbone = _backbone(feature_cache="memory")
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    backbone(x)
    assert backbone.feature_cache.stats()["misses"] == 0


def test_content_hash_depends_on_values_and_shape():
    x = torch.zeros(3, 4, 6)
    assert view_content_hash(x) == view_content_hash(x.clone())
    assert view_content_hash(x) != view_content_hash(x.reshape(3, 6, 4))
    y = x.clone()
    y[0, 0, 0] = 1e-7
    assert view_content_hash(x) != view_content_hash(y)
    with pytest.raises(ValueError, match="store_dtype"):
        FeatureCache("memory", {}, store_dtype="float64")


def test_memory_part_is_bounded_and_evicts_least_recently_used():
    cache = FeatureCache("memory", {"test": 1}, max_memory_bytes=3 * 4 * 2)  # three float16 (4,) entries
    compute = lambda v: v.reshape(v.shape[0], -1)[:, :4] * 2  # noqa: E731
    views = [torch.full((1, 4), float(i)) for i in range(5)]
    for v in views[:3]:
        cache(v, compute)
    cache(views[0], compute)  # touch 0: now 1 is the oldest
    cache(views[3], compute)
    stats = cache.stats()
    assert stats["memory_entries"] == 3 and stats["memory_bytes"] <= 24
    before = cache.misses
    cache(views[0], compute)
    assert cache.misses == before  # kept
    cache(views[1], compute)
    assert cache.misses == before + 1  # evicted, recomputed


@pytest.mark.parametrize("cache", [None, "memory"])
def test_frozen_output_is_a_leaf_so_evidence_maps_work(cache):
    import numpy as np
    from PIL import Image

    from hrrkit.models import HRRDetector, preset_config

    backbone = _backbone(feature_cache=cache)
    x = torch.rand(1, 3, 16, 16)
    out = backbone(x)
    assert out.requires_grad and out.grad_fn is None  # no graph through the frozen weights
    with torch.no_grad():
        assert not backbone(x).requires_grad
    torch.manual_seed(0)
    config = preset_config("univfd").replace(**{
        "input.crop_size": 32, "backbone.name": "efficientnet_lite0",
        "backbone.options": {"pretrained": True, "out_index": 5, "frozen": True, "feature_cache": cache}})
    detector = HRRDetector(config).eval()
    with torch.no_grad():
        for p in detector.head.parameters():
            p.normal_(0, 0.5)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 29, 3), dtype=np.uint8))
    maps = detector.predict([image], with_maps=True)[0]["maps"]
    assert np.abs(maps["1"]).sum() > 0  # the per-location contributions to the logit are not all zero
