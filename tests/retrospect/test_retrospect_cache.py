"""Reconstruction cache: atomic entries, corruption detection, resume after a real kill, sharding."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrrkit.cli import main as cli_main
from hrrkit.retrospect import AutoencoderRetrospector, ReconstructionCache, cache_config, precompute
from hrrkit.retrospect.cache import CacheCorruptError, file_content_hash, shard
from hrrkit.retrospect.tiny import tiny_vae

ROOT = Path(__file__).resolve().parents[2]


def _images(folder: Path, n: int, sizes=((8, 8), (9, 12))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def test_put_load_round_trip_and_corruption(tmp_path):
    cache = ReconstructionCache(tmp_path, {"what": "test"}, store_dtype="float32")
    h = "ab" + "0" * 62
    recon, resid = torch.rand(3, 5, 7), torch.rand(3, 5, 7)
    cache.put(h, {"reconstruction": recon, "residual": resid}, {"source": "x.png"})
    entry = cache.load(h)
    torch.testing.assert_close(entry.reconstruction, recon)
    assert entry.metadata["source"] == "x.png" and entry.latent_error is None
    assert cache.status(h) == "ok" and len(cache) == 1

    path = cache.entry_path(h)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the tensor payload: still parses, checksum catches it
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="checksum"):
        cache.load(h)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated: does not parse
    with pytest.raises(CacheCorruptError, match="unreadable"):
        cache.load(h)
    assert cache.status(h) == "corrupt" and cache.get(h) is None
    assert cache.status("cd" + "1" * 62) == "missing"
    # the same config names the same folder; another config another one
    assert ReconstructionCache(tmp_path, {"what": "test"}, store_dtype="float32").dir == cache.dir
    assert ReconstructionCache(tmp_path, {"what": "other"}).dir != cache.dir


def test_precompute_resumes_recomputes_corrupt_and_skips_unreadable(tmp_path):
    files = _images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"not an image at all")
    files.append(tmp_path / "imgs" / "bad.png")
    retro = AutoencoderRetrospector(tiny_vae())
    cache = ReconstructionCache(tmp_path / "cache", cache_config(retro))

    first = precompute(retro, files, cache, batch_size=2, progress=False)
    assert (first.total, first.computed, first.cached) == (6, 5, 0)
    assert [Path(p).name for p, _ in first.failed] == ["bad.png"]
    assert "bad.png" in first.failed[0][1]
    # entries match a direct call on the same image
    from hrrkit.data.io import load_image, to_tensor

    x = to_tensor(load_image(files[1]))[None]
    entry = cache.get_file(files[1])
    torch.testing.assert_close(entry.reconstruction.float(), retro(x)[0], atol=2e-3, rtol=0)
    assert entry.metadata["nfe"] == "0" and entry.metadata["height"] == "9"

    corrupt_path = cache.entry_path(file_content_hash(files[2]))
    corrupt_path.write_bytes(corrupt_path.read_bytes()[:40])
    second = precompute(retro, files, cache, batch_size=2, progress=False)
    assert (second.computed, second.cached, second.recomputed_corrupt) == (1, 4, 1)
    assert cache.status(file_content_hash(files[2])) == "ok"


def test_cache_resumes_after_a_real_kill(tmp_path, pixel_pipeline):
    n = 30
    _images(tmp_path / "imgs", n, sizes=((8, 8),))
    args = ["retrospect", "run", str(tmp_path / "imgs"), "--model", pixel_pipeline, "--kind", "pixel",
            "--steps", "10", "--cache", str(tmp_path / "cache"), "--batch-size", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrrkit", *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    entries: list[Path] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            entries = list((tmp_path / "cache").glob("*/entries/*/*.safetensors"))
            if len(entries) >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{err.decode()[-2000:]}"

    cache_dir = next((tmp_path / "cache").iterdir())
    done = list(cache_dir.glob("entries/*/*.safetensors"))
    assert 3 <= len(done) < n
    # a kill mid-write leaves at most a temporary file, never a half-written entry
    fake_tmp = done[0].parent / f".tmp-{socket.gethostname()}-{proc.pid}-deadbeef"
    fake_tmp.write_bytes(b"half an entry")
    for path in done:
        assert path.stat().st_size > 100

    report = tmp_path / "report.json"
    assert cli_main([*args, "--report", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["total"] == n and summary["failed"] == 0
    assert summary["cached"] == len(done) and summary["computed"] == n - len(done)
    assert summary["stale_tmp_removed"] >= 1 and not fake_tmp.exists()
    assert not list(cache_dir.rglob(".tmp-*"))
    assert len(list(cache_dir.glob("entries/*/*.safetensors"))) == n


def test_shard_is_a_partition():
    files = [Path(f"f{i}.png") for i in (5, 3, 9, 1, 7, 2, 8)]
    parts = [shard(files, r, 3) for r in range(3)]
    assert sorted(p for part in parts for p in part) == sorted(files)
    assert sum(len(p) for p in parts) == len(files)
    with pytest.raises(ValueError):
        shard(files, 3, 3)


def test_torchrun_two_gloo_ranks_share_the_work(tmp_path, latent_pipeline):
    n = 7
    _images(tmp_path / "imgs", n)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hrrkit", "retrospect", "run", str(tmp_path / "imgs"), "--model", latent_pipeline,
           "--kind", "autoencoder", "--cache", str(tmp_path / "cache"), "--no-progress",
           "--report", str(tmp_path / "report.json")]  # fmt: skip
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "report.json").read_text())
    # summed over both ranks: every image computed exactly once
    assert (summary["total"], summary["computed"], summary["cached"]) == (n, n, 0)
    sources = []
    for entry in (tmp_path / "cache").glob("*/entries/*/*.safetensors"):
        from safetensors import safe_open

        with safe_open(str(entry), framework="pt") as handle:
            sources.append(Path(handle.metadata()["source"]).name)
    assert sorted(sources) == [f"img{i:03d}.png" for i in range(n)]


def test_cli_reencode_keys_a_separate_cache(tmp_path, latent_pipeline, capsys):
    _images(tmp_path / "imgs", 3)
    base = ["retrospect", "run", str(tmp_path / "imgs"), "--model", latent_pipeline, "--kind", "autoencoder",
            "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    assert cli_main(base) == 0
    assert cli_main([*base, "--reencode", "jpeg:90"]) == 0
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 2
    configs = [json.loads((tmp_path / "cache" / f / "config.json").read_text())["loader"] for f in folders]
    assert any("ReEncode(JPEG,90)" in c for c in configs)
    assert cli_main([*base, "--reencode", "gif"]) == 2
    assert "reencode" in capsys.readouterr().err
