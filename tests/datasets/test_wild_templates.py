"""The reviewed selection of ComfyUI thumbnails: every listed file present, no input labelled generated."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from hrrkit.datasets import wild_templates
from hrrkit.datasets.wild_templates import (
    DROPPED,
    EDITED,
    TEXT_TO_IMAGE,
    ThumbnailUnavailableError,
    load_thumbnail,
    template_files,
)

pytest.importorskip("comfyui_workflow_templates_media_image")


def test_every_listed_template_is_shipped_once():
    shipped = set(template_files())
    listed = list(TEXT_TO_IMAGE) + list(EDITED) + list(DROPPED)
    assert len(listed) == len(set(listed)), "a template is in two lists"
    assert set(listed) <= shipped, sorted(set(listed) - shipped)
    assert len(TEXT_TO_IMAGE) >= 35 and len(EDITED) >= 15


def test_no_reserved_hosted_template_is_listed():
    # templates named api_* are reserved for an independent check (issue 23): never used, nor listed
    listed = list(TEXT_TO_IMAGE) + list(EDITED) + list(DROPPED)
    assert not [name for name in listed if name.lower().startswith("api_")]


def test_no_template_input_is_labelled_generated():
    for name in list(TEXT_TO_IMAGE) + list(EDITED):
        assert re.search(r"-1$", name), f"{name} is not a template's output (-1): inputs are -2 and later"


def test_names_key_their_entries_and_generators_are_named():
    for pool in (TEXT_TO_IMAGE, EDITED):
        for name, thumb in pool.items():
            assert thumb.template == name
            assert thumb.generator and thumb.generator == thumb.generator.lower() and " " not in thumb.generator


def test_every_selected_thumbnail_is_an_opaque_square_rgb_image():
    for thumb in list(TEXT_TO_IMAGE.values()) + list(EDITED.values()):
        pixels = load_thumbnail(thumb)
        assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
        assert pixels.shape[0] == pixels.shape[1] >= 256, (thumb.template, pixels.shape)


def test_a_changed_thumbnail_names_the_package_and_the_fix():
    thumb = dataclasses.replace(TEXT_TO_IMAGE["default-1"], sha256="0" * 64)
    with pytest.raises(ThumbnailUnavailableError, match=r"default-1\.webp.*comfyui-workflow-templates-media-image==0\.3\.160"):
        load_thumbnail(thumb)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(wild_templates, "_PACKAGE", "no_such_package_xyz")
    wild_templates.templates_dir.cache_clear()
    try:
        with pytest.raises(ThumbnailUnavailableError, match=r"hrrkit\[wild\]"):
            wild_templates.templates_dir()
    finally:
        monkeypatch.undo()
        wild_templates.templates_dir.cache_clear()


def test_an_unreadable_image_is_named():
    with pytest.raises(ThumbnailUnavailableError, match="broken.webp: not a readable image"):
        wild_templates.decode_rgb(b"RIFF\x00\x00\x00\x00WEBPjunk", "broken.webp")


def test_the_docs_list_every_reviewed_template():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "wild_benchmark_v1.md").read_text()
    missing = [name for name in list(TEXT_TO_IMAGE) + list(EDITED) + list(DROPPED) if f"`{name}`" not in page]
    assert not missing, f"docs/wild_benchmark_v1.md does not list {missing}"
