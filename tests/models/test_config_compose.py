"""Config sections build their own modules, defaults exist once, choices are checked at load."""

from __future__ import annotations

import inspect

import pytest

from hrrkit.data.dataset import AUGMENTATION_PRESETS
from hrrkit.data.layouts import Sample
from hrrkit.models.config import (
    ConfigError,
    DetectorConfig,
    InputConfig,
    LineEnhancementConfig,
    RescaleConfig,
    StyleConfig,
)
from hrrkit.nn import LineEnhancement, NoisyRescale, StyleStatistics


def _defaults(cls) -> dict:
    return {k: p.default for k, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}


def test_config_defaults_are_the_module_defaults():
    rescale, line, style = RescaleConfig(), LineEnhancementConfig(), StyleConfig()
    nr, le, ss = _defaults(NoisyRescale), _defaults(LineEnhancement), _defaults(StyleStatistics)
    assert rescale.scales == nr["scales"] and rescale.dither_std == nr["noise_std"]
    assert rescale.dither_in_eval == nr["dither_in_eval"]
    assert (line.sigma_sharpen, line.amount, line.sigma_edge, line.beta) == (
        le["sigma_sharpen"], le["amount"], le["sigma_edge"], le["beta"])
    assert style.levels == ss["levels"] and style.descriptor == ss["descriptor"]


def test_sections_build_their_modules():
    built = RescaleConfig(scales=(1.0, 2.0), dither_std=0.02).build()
    assert isinstance(built, NoisyRescale) and built.scales == (1.0, 2.0) and built.noise_std == 0.02
    off = RescaleConfig(enabled=False).build()
    assert off.scales == (1.0,) and off.noise_std == 0.0
    assert LineEnhancementConfig(enabled=False).build() is None
    assert LineEnhancementConfig(beta=0.25).build().beta == 0.25
    assert StyleConfig(enabled=False).build() is None
    assert StyleConfig(levels=(1, 2)).build().levels == (1, 2)


@pytest.mark.parametrize("dotted, value", [
    ("head.kind", "mlp"), ("head.basis", "fourier"), ("head.normalization", "layernorm"),
    ("head.penalty_mode", "adam"), ("rescale.fusion", "max"), ("style.descriptor", "texture"),
    ("retrospector.kind", "vae"), ("retrospector.input", "noise"), ("input.policy", "resize"),
    ("input.eval_policy", "resize"), ("input.augment", "heavy"), ("input.reencode", "gif:9"),
])
def test_a_bad_choice_fails_at_load_naming_the_field(dotted, value):
    section, name = dotted.split(".")
    data = DetectorConfig().to_dict()
    data[section][name] = value
    with pytest.raises(ConfigError, match=rf"detector: {section}\.{name}="):
        DetectorConfig.from_dict(data)


def test_configs_with_head_fuse_still_load():
    data = DetectorConfig().to_dict()
    data["head"]["fuse"] = "learned"
    del data["rescale"]["fusion"]
    assert DetectorConfig.from_dict(data).rescale.fusion == "learned"


def test_input_dataset_carries_every_input_setting(tmp_path):
    inp = InputConfig(policy="random_crop", eval_policy="tiles", crop_size=12, max_tiles=3, reencode="jpeg:90",
                      augment="flip", max_pixels=10_000)
    samples = [Sample(tmp_path / "a.png", 0)]
    train, val = inp.dataset(samples, train=True, seed=5), inp.dataset(samples)
    assert (train.input_policy, val.input_policy) == ("random_crop", "tiles")
    for ds in (train, val):
        assert ds.crop_size == 12 and ds.max_tiles == 3 and ds.load_options["max_pixels"] == 10_000
        assert ds.reencode is not None and ds.reencode.format == "JPEG" and ds.reencode.quality == 90
    assert train.augmentation == AUGMENTATION_PRESETS["flip"] and train.augmentation.hflip_prob > 0 and val.augmentation.is_identity and train.seed == 5
