"""dinov2_vits14's multi-block patch maps and CLS output (the default detector's and UnivFD's front ends)."""

from __future__ import annotations

import pytest
import torch

from hrrkit.models.backbones import build_backbone


def _backbone(**options):
    # random weights: these tests check shapes and wiring, the converted weights are tested in test_dinov2.py
    return build_backbone("dinov2_vits14", pretrained=False, frozen=True, **options).eval()


def test_blocks_concatenate_the_patch_maps_of_each_block():
    torch.manual_seed(0)
    multi = _backbone(blocks=(1, 3))
    x = torch.rand(2, 3, 42, 56) * 2 - 1
    out = multi(x)
    assert multi.out_channels == 768 and multi.out_block == 3
    assert out.shape == (2, 768, 3, 4)
    (_, p1), (_, p3) = multi.forward_intermediates(x, (1, 3))
    torch.testing.assert_close(out, torch.cat([p1, p3], dim=1))


def test_cls_tokens_come_as_a_one_cell_map():
    torch.manual_seed(0)
    cls = _backbone(blocks=(2, 4), tokens="cls")
    x = torch.rand(3, 3, 28, 28) * 2 - 1
    out = cls(x)
    assert out.shape == (3, 768, 1, 1) and cls.out_channels == 768
    (c2, _), (c4, _) = cls.forward_intermediates(x, (2, 4))
    torch.testing.assert_close(out[:, :, 0, 0], torch.cat([c2, c4], dim=1))


def test_the_last_block_alone_is_the_plain_forward():
    torch.manual_seed(0)
    plain = _backbone(out_block=2)
    torch.manual_seed(0)
    listed = _backbone(blocks=(2,))
    x = torch.rand(1, 3, 28, 42) * 2 - 1
    torch.testing.assert_close(listed(x), plain(x))


@pytest.mark.parametrize("options, match", [
    ({"blocks": (0, 3)}, "distinct block numbers"), ({"blocks": (3, 3)}, "distinct block numbers"),
    ({"blocks": ()}, "distinct block numbers"), ({"tokens": "all"}, "tokens='all'"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        _backbone(**options)


def test_the_feature_cache_identity_records_blocks_and_tokens():
    a = _backbone(blocks=(1, 2))._cache_identity()
    b = _backbone(blocks=(1, 2), tokens="cls")._cache_identity()
    assert a["blocks"] == [1, 2] and a != b


def _twins(**second_options):
    """Two frozen backbones with the same random weights: 4-block style input and a CLS probe."""
    torch.manual_seed(0)
    a = _backbone(blocks=(1, 2, 4))
    b = _backbone(**{"tokens": "cls", "out_block": 4, **second_options})
    b.body.load_state_dict(a.body.state_dict())
    return a, b


def test_a_shared_trunk_runs_one_pass_and_gives_the_same_numbers():
    from hrrkit.models.dinov2 import shared_trunk

    a, b = _twins()
    x = torch.rand(2, 3, 42, 56) * 2 - 1
    alone_a, alone_b = a(x), b(x)
    blocks_run = []
    for backbone in (a, b):
        backbone.body.blocks[0].register_forward_hook(lambda *args: blocks_run.append(1))
    own_bodies = (a.body, b.body)
    with shared_trunk([a, b]) as counts:
        shared_b, shared_a = b(x.clone()), a(x.clone())  # the CLS probe first: it still computes a's blocks too
        other = a(x.flip(-1))  # another input is a new pass
    assert torch.equal(shared_a, alone_a) and torch.equal(shared_b, alone_b)
    assert counts == {"passes": 2, "reused": 1} and len(blocks_run) == 2
    torch.testing.assert_close(other, a(x.flip(-1)))
    assert (a.body, b.body) == own_bodies and a.body._pass_memo is None  # restored on exit


def test_a_shared_trunk_needs_gradients_off_and_computes_anew_with_them():
    from hrrkit.models.dinov2 import shared_trunk

    a, b = _twins()
    x = torch.rand(1, 3, 28, 28) * 2 - 1
    with shared_trunk([a, b]) as counts, torch.enable_grad():
        a.body.forward_intermediates(x, (2,))
        b.body.forward_intermediates(x, (2,))
    assert counts == {"passes": 0, "reused": 0}


@pytest.mark.parametrize("change, match", [
    ({"input_offset": -1.0}, "input_offset"), ({"size_policy": "pad"}, "size_policy"),
])
def test_backbones_that_cannot_share_are_named(change, match):
    from hrrkit.models.dinov2 import shared_trunk

    a, b = _twins(**change)
    with pytest.raises(ValueError, match=match):
        with shared_trunk([a, b]):
            pass
    torch.manual_seed(1)
    other = _backbone(tokens="cls", out_block=4)  # other weights, all else equal
    with pytest.raises(ValueError, match="has weights="):
        with shared_trunk([a, other]):
            pass
    trainable = build_backbone("dinov2_vits14", pretrained=False, frozen=False)
    with pytest.raises(ValueError, match="not frozen"):
        with shared_trunk([a, trainable]):
            pass
