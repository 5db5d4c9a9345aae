"""Cost is reported (NFE, seconds per image, cache hits) and a bad cache entry is never used: an entry
of another config, a truncated or an edited one is recomputed; a retrospector failing on one image
skips that image with the reason and loses nothing already cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hrrkit.cli import main as cli_main
from hrrkit.retrospect import PixelDDIMRetrospector, ReconstructionCache, cache_config, precompute
from hrrkit.retrospect.cache import file_content_hash
from hrrkit.retrospect.ddim import PIXEL_SCHEDULER_DEFAULTS, predict_original
from hrrkit.retrospect.tiny import tiny_pixel_unet


def _images(folder: Path, n: int, size=(16, 16)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_pixel_one_step_matches_the_formula_and_costs_one_nfe():
    from diffusers import DDIMScheduler

    unet = tiny_pixel_unet()
    retro = PixelDDIMRetrospector(unet, mode="one_step", timestep=150, seed=3)
    x = torch.rand(2, 3, 8, 10) * 2 - 1
    a = DDIMScheduler(**PIXEL_SCHEDULER_DEFAULTS).alphas_cumprod[150]
    eps = torch.randn((1, 3, 8, 10), generator=torch.Generator().manual_seed(3)).expand_as(x)
    x_t = a.sqrt() * x + (1 - a).sqrt() * eps
    with torch.no_grad():
        expected = predict_original(unet(x_t, torch.tensor(150)).sample, x_t, a, "epsilon").clamp(-1, 1)
    out = retro.retrospect(x)
    torch.testing.assert_close(out.reconstruction, expected, atol=1e-5, rtol=0)
    assert out.nfe == retro.cost().nfe == 1
    # one image alone gives what it gives in a batch (the noise is per image, not per batch)
    torch.testing.assert_close(retro(x[1:]), out.reconstruction[1:], atol=1e-5, rtol=0)
    assert retro.config_hash() != PixelDDIMRetrospector(unet, mode="one_step", timestep=151, seed=3).config_hash()
    assert retro.config_hash() != PixelDDIMRetrospector(unet, mode="invert").config_hash()


def test_summary_reports_nfe_and_seconds_and_a_hit_costs_far_less(tmp_path):
    files = _images(tmp_path / "imgs", 4, size=(64, 64))
    retro = PixelDDIMRetrospector(tiny_pixel_unet(), steps=10)  # NFE 20: a reconstruction that costs something
    cache = ReconstructionCache(tmp_path / "cache", cache_config(retro))
    first = precompute(retro, files, cache, batch_size=1, progress=False)
    assert first.nfe_per_image == 20 and first.seconds_per_image > 0
    assert float(cache.get_file(files[0]).metadata["seconds"]) > 0
    second = precompute(retro, files, cache, batch_size=1, progress=False)
    assert second.cached == 4 and second.computed == 0
    assert 0 < second.seconds_per_hit < 0.5 * first.seconds_per_image, (second.seconds_per_hit, first.seconds_per_image)
    report = second.as_dict()
    assert {"nfe_per_image", "seconds_per_image", "seconds_per_cache_hit"} <= set(report)


def test_entries_of_another_config_truncated_or_edited_are_recomputed(tmp_path):
    files = _images(tmp_path / "imgs", 4)
    retro = PixelDDIMRetrospector(tiny_pixel_unet(), steps=2)
    other = PixelDDIMRetrospector(tiny_pixel_unet(), steps=3)
    cache = ReconstructionCache(tmp_path / "cache", cache_config(retro))
    other_cache = ReconstructionCache(tmp_path / "cache", cache_config(other))
    precompute(retro, files, cache, batch_size=2, progress=False)
    precompute(other, files, other_cache, batch_size=2, progress=False)
    good = {f: cache.get_file(f).reconstruction.clone() for f in files}
    h = [file_content_hash(f) for f in files]

    shutil.copy(other_cache.entry_path(h[0]), cache.entry_path(h[0]))  # written by another config
    path = cache.entry_path(h[1])
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    # metadata edited in place (same length, so the file still parses): "nfe":"4" -> "nfe":"5"
    data = cache.entry_path(h[2]).read_bytes()
    assert data.count(b'"nfe":"4"') == 1
    cache.entry_path(h[2]).write_bytes(data.replace(b'"nfe":"4"', b'"nfe":"5"'))
    for i in range(3):
        assert cache.status(h[i]) == "corrupt", i
    assert "another config" in _load_error(cache, h[0])
    assert "checksum" in _load_error(cache, h[2])

    summary = precompute(retro, files, cache, batch_size=2, progress=False)
    assert (summary.recomputed_corrupt, summary.computed, summary.cached) == (3, 3, 1)
    for f in files:
        torch.testing.assert_close(cache.get_file(f).reconstruction, good[f])


def _load_error(cache: ReconstructionCache, content_hash: str) -> str:
    try:
        cache.load(content_hash)
    except Exception as err:  # noqa: BLE001 - the message is what is checked
        return str(err)
    return ""


class _FailsOnBrightImages:
    """Wraps a retrospector; raises for any image whose mean exceeds a threshold (one bad input)."""

    def __init__(self, inner, threshold):
        self.inner, self.threshold = inner, threshold

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def retrospect(self, images):
        if (images.mean(dim=(1, 2, 3)) > self.threshold).any():
            raise RuntimeError("the model produced NaN for this image")
        return self.inner.retrospect(images)


def test_a_failing_image_is_skipped_with_its_reason_and_nothing_cached_is_lost(tmp_path):
    files = _images(tmp_path / "imgs", 4)
    bright = tmp_path / "imgs" / "bright.png"
    Image.fromarray(np.full((16, 16, 3), 250, dtype=np.uint8)).save(bright)
    inner = PixelDDIMRetrospector(tiny_pixel_unet(), steps=2)
    cache = ReconstructionCache(tmp_path / "cache", cache_config(inner))
    precompute(inner, files[:2], cache, batch_size=2, progress=False)  # two entries already cached
    before = {f: cache.entry_path(file_content_hash(f)).read_bytes() for f in files[:2]}

    summary = precompute(_FailsOnBrightImages(inner, 0.9), [*files, bright], cache, batch_size=4, progress=False)
    assert [Path(p).name for p, _ in summary.failed] == ["bright.png"]
    assert "NaN for this image" in summary.failed[0][1]
    assert (summary.cached, summary.computed) == (2, 2)  # the batch-mates of the bad image were retried alone
    for f, data in before.items():
        assert cache.entry_path(file_content_hash(f)).read_bytes() == data
    assert len(cache) == 4


def test_cli_prints_the_cost_of_the_shipped_model(tmp_path, capsys):
    folder = tmp_path / "imgs"
    _images(folder, 2, size=(24, 20))
    assert cli_main(["retrospect", "run", str(folder), "--model", "hrrkit:real-photo-unet", "--cache",
                     str(tmp_path / "cache"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PixelDDIMRetrospector(mode='invert'" in out and "nfe=2" in out
    assert "cost: 2 NFE/image" in out and "s/image computed (2)" in out


def test_cost_benchmark_rows_grow_with_size():
    from hrrkit.bench.cases.retrospect import default_retrospectors, format_cost_table, time_retrospectors

    factories = default_retrospectors()
    chosen = {k: factories[k] for k in ("real-photo-unet DDIM to t=24 (NFE 2)", "blur sigma=1")}
    rows = time_retrospectors(chosen, sizes=(16, 32), repeats=1)
    by = {(r.retrospector, r.size): r for r in rows}
    unet16, unet32 = by[("real-photo-unet DDIM to t=24 (NFE 2)", 16)], by[("real-photo-unet DDIM to t=24 (NFE 2)", 32)]
    assert unet16.nfe == unet32.nfe == 2 and by[("blur sigma=1", 32)].nfe == 0
    assert 3.5 < unet32.gflop / unet16.gflop < 4.5, "fully convolutional: FLOPs grow with the pixel count"
    assert all(r.cache_hit_seconds > 0 and r.seconds_per_image > 0 for r in rows)
    assert "| real-photo-unet DDIM to t=24 (NFE 2) | 32 | 2 |" in format_cost_table(rows)
