"""The head contract (one HeadLoss, the same hooks) and the preset registry."""

from __future__ import annotations

import pytest
import torch

from hrrkit.models import HRRDetector, list_presets, preset_config, register_preset
from hrrkit.models import presets as preset_module
from hrrkit.models.config import ConfigError, DetectorConfig
from hrrkit.nn import HEADS, AdditiveRefinementHead, HeadLoss, LinearHead


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_every_head_returns_headloss_and_has_the_hooks(kind):
    torch.manual_seed(0)
    config = DetectorConfig()
    head = HEADS[kind].from_config(6, config.head, config.loss)
    x, y = torch.randn(10, 6), torch.randint(0, 2, (10,)).float()
    parts = head.loss(head(x), y)
    assert isinstance(parts, HeadLoss) and parts.total.requires_grad
    assert set(parts.as_floats()) == {"bce", "correntropy", "penalty"}
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.proximal_step(0.1)  # must exist on every head
    assert isinstance(head.no_weight_decay(), set)
    names = dict(head.named_parameters())
    assert head.no_weight_decay() <= set(names)
    if kind == "linear":
        assert head.no_weight_decay() == set()
        assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())  # a no-op
    with pytest.raises(ValueError, match="differ"):
        head.loss(torch.zeros(3), torch.zeros(3, 1))


def test_afr_proximal_step_is_a_noop_in_loss_mode():
    head = AdditiveRefinementHead(4, penalty_mode="loss", sparsity=10.0, init="linear")
    before = head.afr.beta.detach().clone()
    head.proximal_step(1.0)
    assert torch.equal(head.afr.beta, before)
    head.penalty_mode = "proximal"
    head.proximal_step(1.0)
    assert not torch.equal(head.afr.beta, before)


def test_linear_head_loss_matches_bce():
    head = LinearHead(3)
    logits, y = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.0])
    parts = head.loss(logits, y)
    torch.testing.assert_close(parts.total, torch.nn.functional.binary_cross_entropy_with_logits(logits, y))
    assert parts.penalty.item() == 0.0


def test_detector_hooks_follow_the_head():
    hrr = HRRDetector(preset_config("hrr"))
    assert hrr.no_weight_decay() == {"head.afr.beta"}
    dire = HRRDetector(preset_config("dire"))
    assert isinstance(dire.head, LinearHead) and dire.no_weight_decay() == set()
    dire.after_optimizer_step(0.1)


def test_builtin_presets_and_errors():
    assert list_presets()[:4] == ("hrr", "dire", "hrr_no_msr", "hrr_no_afr")
    assert preset_config("dire").head.kind == "linear" and not preset_config("dire").rescale.enabled
    assert preset_config("hrr_no_afr").rescale.enabled and preset_config("hrr_no_afr").loss.sparsity == 0.0
    assert preset_config("hrr") == DetectorConfig(name="hrr")
    with pytest.raises(ConfigError, match="unknown detector preset 'nope'.*hrr"):
        preset_config("nope")


def test_register_a_preset_from_another_module():
    name = "test_only_tiny"
    try:
        @register_preset(name, "a test preset")
        def _tiny(base: DetectorConfig) -> DetectorConfig:
            return base.replace(**{"head.kind": "linear", "backbone.options": {"width": 4, "depth": 1}})

        assert name in list_presets()
        config = preset_config(name)
        assert config.name == name and config.head.kind == "linear"
        assert preset_module.preset_descriptions()[name] == "a test preset"
        with pytest.raises(ValueError, match="already registered"):
            register_preset(name)(_tiny)
    finally:
        preset_module._PRESETS.pop(name, None)
    with pytest.raises(ValueError, match="not a valid preset name"):
        register_preset("bad name")
