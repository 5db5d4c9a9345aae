"""Where hrrkit keeps what it computes once per machine (benchmark builds, converted weights)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$HRRKIT_CACHE``, else ``$XDG_CACHE_HOME/hrrkit``, else ``~/.cache/hrrkit`` (not created here)."""
    if os.environ.get("HRRKIT_CACHE"):
        return Path(os.environ["HRRKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hrrkit"
