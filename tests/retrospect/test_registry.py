"""One retrospector registry: build_retrospector, the config check and the CLI read it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hrrkit.models.config import ConfigError, DetectorConfig, RetrospectorConfig
from hrrkit.retrospect import (
    BlurRetrospector,
    IdentityRetrospector,
    RetrospectionCost,
    WeightsLoadError,
    build_retrospector,
    retrospector_kind,
    retrospector_kinds,
)
from hrrkit.retrospect.registry import weights_backed_kinds


def test_weight_free_kinds_build_and_report_one_cost_type():
    x = torch.rand(2, 3, 9, 7) * 2 - 1
    assert build_retrospector(RetrospectorConfig(kind="none")) is None
    identity = build_retrospector(RetrospectorConfig(kind="identity"))
    blur = build_retrospector(RetrospectorConfig(kind="blur", blur_sigma=1.5))
    assert isinstance(identity, IdentityRetrospector) and isinstance(blur, BlurRetrospector)
    assert torch.equal(identity(x), x)
    assert blur(x).shape == x.shape and not torch.equal(blur(x), x)
    for retro in (identity, blur):
        cost = retro.cost()
        assert isinstance(cost, RetrospectionCost) and cost.nfe == 0


def test_the_config_check_and_the_cli_read_the_registry():
    assert retrospector_kinds() == ("none", "identity", "blur", "autoencoder", "latent", "pixel_ddim")
    for kind in retrospector_kinds():
        RetrospectorConfig(kind=kind)  # every registered kind is a valid config value
    with pytest.raises(ConfigError, match=r"retrospector\.kind='vae': choose one of \['none'"):
        DetectorConfig.from_dict({"retrospector": {"kind": "vae"}})
    with pytest.raises(ConfigError, match="blur_sigma"):
        RetrospectorConfig(blur_sigma=0.0)
    assert set(weights_backed_kinds()) == {"autoencoder", "latent", "pixel"}
    assert retrospector_kind("pixel").name == "pixel_ddim"
    from hrrkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["retrospect"]
    run = next(a for a in sub._actions if a.dest == "retrospect_command").choices["run"]
    kind = next(a for a in run._actions if a.dest == "kind")
    assert set(kind.choices) == set(weights_backed_kinds())


def test_weights_backed_kinds_need_a_path():
    with pytest.raises(ValueError, match=r"retrospector\.path: required for kind='latent'"):
        build_retrospector(RetrospectorConfig(kind="latent", path=None))
    with pytest.raises(WeightsLoadError, match="pixel UNet2DModel for retrospector.kind=pixel_ddim"):
        build_retrospector(RetrospectorConfig(kind="latent"))  # the default path names the shipped pixel model


def test_importing_the_layers_does_not_import_diffusers():
    code = ("import sys, hrrkit.nn, hrrkit.models, hrrkit.retrospect; "
            "from hrrkit.models import HRRDetector, preset_config; "
            "HRRDetector(preset_config('hrr').replace(**{'retrospector.kind': 'blur'})); "
            "assert 'diffusers' not in sys.modules, 'diffusers was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
