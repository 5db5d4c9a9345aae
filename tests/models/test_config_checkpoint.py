"""DetectorConfig round trips and validation; detector folders; backbones."""

from __future__ import annotations

import json

import pytest
import torch

from hrrkit.models.backbones import available_backbones, build_backbone
from hrrkit.models.checkpoint import CheckpointError, read_detector_folder, save_detector
from hrrkit.models.config import ConfigError, DetectorConfig


def test_config_round_trips_through_json_and_yaml(tmp_path):
    cfg = DetectorConfig().replace(**{"head.kind": "linear", "rescale.scales": [1.0, 0.5]})
    assert cfg.rescale.scales == (1.0, 0.5)
    for name in ("c.json", "c.yaml"):
        cfg.save(tmp_path / name)
        assert DetectorConfig.load(tmp_path / name) == cfg


@pytest.mark.parametrize(
    "data, field",
    [
        ({"head": {"num_basis": "eight"}}, "detector.head.num_basis"),
        ({"rescale": {"scales": [1.0, "x"]}}, "detector.rescale.scales[1]"),
        ({"heads": {}}, "unknown field"),
        ({"threshold": True}, "detector.threshold"),
        ({"backbone": []}, "detector.backbone"),
    ],
)
def test_config_errors_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        DetectorConfig.from_dict(data)


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("head: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        DetectorConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        DetectorConfig.load(tmp_path / "missing.json")


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = DetectorConfig(name="tiny")
        self.lin = torch.nn.Linear(3, 2)
        self.tied = self.lin  # shared storage must survive safetensors


def test_detector_folder_round_trip(tmp_path):
    model = _Tiny()
    save_detector(model, tmp_path / "det", extra={"epoch": 3})
    payload, weights = read_detector_folder(tmp_path / "det")
    assert payload["config"]["name"] == "tiny" and payload["extra"] == {"epoch": 3}
    assert payload["versions"]["torch"] == torch.__version__
    torch.testing.assert_close(weights["lin.weight"], model.lin.weight.detach())


def test_detector_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        read_detector_folder(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        read_detector_folder(tmp_path / "d")
    save_detector(_Tiny(), tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a hrrkit detector"):
        read_detector_folder(tmp_path / "d")
    save_detector(_Tiny(), tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="safetensors"):
        read_detector_folder(tmp_path / "d")


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (33, 20)])
def test_compact_cnn_any_size(size):
    net = build_backbone("compact_cnn", width=8, depth=3)
    out = net(torch.randn(2, 3, *size))
    assert out.shape[:2] == (2, net.out_channels) and torch.isfinite(out).all()


def test_backbone_registry_errors(tmp_path):
    assert "compact_cnn" in available_backbones()
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone("resnet9000")
    with pytest.raises(FileNotFoundError, match="local file"):
        build_backbone("compact_cnn", pretrained_path=str(tmp_path / "w.safetensors"))


def test_backbone_local_weights(tmp_path):
    from safetensors.torch import save_file

    net = build_backbone("compact_cnn", width=8, depth=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    other = build_backbone("compact_cnn", width=8, depth=2, pretrained_path=str(tmp_path / "w.safetensors"))
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b)
