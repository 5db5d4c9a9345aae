"""HRRDetector, baselines, the backbone registry and the serialisable detector config."""

from hrrkit.models.backbones import available_backbones, build_backbone, register_backbone
from hrrkit.models.checkpoint import CheckpointError, save_detector
from hrrkit.models.config import ConfigError, DetectorConfig
from hrrkit.models.detector import PRESETS, DetectorOutput, HRRDetector, load_detector, preset_config

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DetectorConfig",
    "DetectorOutput",
    "HRRDetector",
    "available_backbones",
    "build_backbone",
    "load_detector",
    "preset_config",
    "register_backbone",
    "save_detector",
]
