"""A detector trained once per session on a tiny generated flat data set, for the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hrrkit.cli import main
from hrrkit.testing.synthetic_layouts import tiny_run_config, write_synthetic_layout


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """``{"data": flat data root, "run": run folder, "model": run/best}`` (3 epochs, test AP ≈ 1)."""
    tmp = tmp_path_factory.mktemp("trained_detector")
    root = write_synthetic_layout(tmp / "data", "flat", per_class=14, seed=11)
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(root, tmp / "run", epochs=3)))
    assert main(["train", str(config), "--no-progress", "--no-test"]) == 0
    return {"data": root, "run": tmp / "run", "model": tmp / "run" / "best"}
