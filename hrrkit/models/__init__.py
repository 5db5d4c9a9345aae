"""HRRDetector, the preset and backbone registries and the serialisable detector config."""

from hrrkit.models.backbones import available_backbones, build_backbone, register_backbone
from hrrkit.models.checkpoint import CheckpointError, save_detector
from hrrkit.models.config import (
    BackboneConfig,
    ConfigError,
    DetectorConfig,
    HeadConfig,
    InputConfig,
    LineEnhancementConfig,
    LossConfig,
    RescaleConfig,
    RetrospectorConfig,
    StyleConfig,
)
from hrrkit.models.detector import DetectorOutput, HRRDetector, load_detector
from hrrkit.models.presets import list_presets, preset_config, register_preset

__all__ = [
    "BackboneConfig",
    "CheckpointError",
    "ConfigError",
    "DetectorConfig",
    "HeadConfig",
    "InputConfig",
    "LineEnhancementConfig",
    "LossConfig",
    "RescaleConfig",
    "RetrospectorConfig",
    "StyleConfig",
    "DetectorOutput",
    "HRRDetector",
    "available_backbones",
    "build_backbone",
    "list_presets",
    "load_detector",
    "preset_config",
    "register_backbone",
    "register_preset",
    "save_detector",
]
