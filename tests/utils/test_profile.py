"""Per-stage time and peak memory (hrrkit.utils.profile)."""

from __future__ import annotations

import json
import mmap

import pytest

from hrrkit.utils.profile import STAGES, StageProfile, active_profile, current_rss_mb, stage


def test_stages_are_no_ops_without_a_profile():
    assert active_profile() is None
    with stage("decode"):
        pass


def test_time_goes_to_the_innermost_stage_and_images_divide_it():
    with StageProfile() as profile:
        assert active_profile() is profile
        profile.count_images(4)
        with stage("backbone"):
            with stage("retrospection"):
                sum(range(200_000))
        with stage("decode"):
            pass
    assert active_profile() is None
    rows = {r.stage: r for r in profile.rows()}
    assert [r.stage for r in profile.rows()] == [s for s in STAGES if s in rows]  # pipeline order
    assert rows["retrospection"].calls == rows["backbone"].calls == 1
    assert rows["retrospection"].seconds > 0 and rows["backbone"].seconds >= 0
    assert rows["retrospection"].images_per_s == pytest.approx(4 / rows["retrospection"].seconds)
    payload = json.loads(json.dumps(profile.as_dict()))
    assert payload["images"] == 4 and {s["stage"] for s in payload["stages"]} == set(rows)
    table = profile.table()
    assert table.splitlines()[0].split() == ["stage", "seconds", "calls", "images/s", "peak", "RSS", "MB",
                                             "growth", "MB"]
    assert "(4 images)" in table


@pytest.mark.skipif(current_rss_mb() is None, reason="needs /proc (Linux)")
def test_the_peak_of_a_short_lived_allocation_is_charged_to_its_stage():
    with StageProfile() as profile:
        if not profile.memory:
            pytest.skip("/proc/self/clear_refs is not writable here")
        with stage("backbone"):
            with stage("retrospection"):
                # 40 MiB of fresh pages (an anonymous map, so no memory the allocator kept from earlier
                # tests is reused), touched, then freed before the stage ends
                block = mmap.mmap(-1, 40 * 2**20)
                block.write(b"\1" * len(block))
                block.close()
        with stage("head"):
            pass
    rows = {r.stage: r for r in profile.rows()}
    assert rows["retrospection"].growth_mb > 35
    assert rows["backbone"].peak_rss_mb >= rows["retrospection"].peak_rss_mb  # the enclosing stage saw it
    assert rows["head"].growth_mb < 35  # the freed block is not charged to the next stage
    assert profile.peak_rss_mb >= rows["retrospection"].peak_rss_mb
