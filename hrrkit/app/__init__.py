"""``hrrkit app``: a local web page for people and a JSON API for programs (optional extra ``hrrkit[app]``).

    hrrkit app --model runs/hrr/best            # http://127.0.0.1:7860/

    from hrrkit.app import create_app           # the ASGI app, to embed or test
    app = create_app(HRRDetector.from_pretrained("runs/hrr/best"))

Gradio (and torch) are imported only when used, so ``import hrrkit.app`` is cheap and works without
the extra. See ``docs/app.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "hrrkit.app.server", "serve": "hrrkit.app.server", "AppUnavailableError": "hrrkit.app.server",
    "score_uploads": "hrrkit.app.analysis", "ImageResult": "hrrkit.app.analysis",
    "MAX_IMAGES_PER_REQUEST": "hrrkit.app.limits", "DEFAULT_MAX_FILE_MB": "hrrkit.app.limits",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hrrkit.app' has no attribute {name!r}")
