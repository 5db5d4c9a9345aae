"""The real-photograph catalogue: roles, hashes, and clear errors for changed files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hrrkit.retrospect import photos
from hrrkit.retrospect.photos import (
    CATALOGUE,
    PhotoUnavailableError,
    load_source_photograph,
    source_photographs,
    user_photographs,
)


def test_roles_are_the_decided_ones():
    assert {p.name for p in source_photographs("test")} == {"coffee", "china", "grace_hopper"}
    train = {p.name for p in source_photographs("train")}
    assert train == {p.name for p in CATALOGUE} - {"coffee", "china", "grace_hopper"}
    assert len(source_photographs(None)) == len(CATALOGUE)
    with pytest.raises(ValueError, match="roles"):
        source_photographs("val")


def test_a_scene_never_has_two_roles():
    roles: dict[str, set[str]] = {}
    for photo in CATALOGUE:
        roles.setdefault(photo.scene, set()).add(photo.role)
    assert all(len(r) == 1 for r in roles.values()), roles
    assert photos._BY_NAME["motorcycle_left"].scene == photos._BY_NAME["motorcycle_right"].scene


def test_every_photograph_loads_in_colour():
    for photo in CATALOGUE:
        pixels = load_source_photograph(photo.name)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert min(pixels.shape[:2]) >= 256, photo.name
        assert not np.array_equal(pixels[..., 0], pixels[..., 1]), f"{photo.name} is grey"


def test_a_changed_file_names_the_package_and_fix():
    wrong = dataclasses.replace(photos._BY_NAME["chelsea"], sha256="0" * 64)
    with pytest.raises(PhotoUnavailableError, match=r"chelsea\.png.*scikit-image.*force-reinstall"):
        load_source_photograph(wrong)


def test_a_missing_package_names_the_extra():
    ghost = dataclasses.replace(photos._BY_NAME["chelsea"], package="no_such_package_xyz", distribution="no-such-dist")
    with pytest.raises(PhotoUnavailableError, match=r"no-such-dist.*hrrkit\[wild\]"):
        load_source_photograph(ghost)


def test_user_photographs_roles_follow_content(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    found = user_photographs([tmp_path])
    assert len(found) == 12 and {p.role for p in found} <= {"train", "test"}
    # renaming keeps every role: it comes from the bytes
    (tmp_path / "p0.png").rename(tmp_path / "renamed.png")
    assert {(p.sha256, p.role) for p in user_photographs([tmp_path])} == {(p.sha256, p.role) for p in found}
    assert load_source_photograph(found[0]).shape == (40, 50, 3)
    with pytest.raises(FileNotFoundError, match="real_dirs"):
        user_photographs([tmp_path / "missing"])
