#!/usr/bin/env bash
# The GPU check (design.md §7, issue 9): run on a machine that already has torch and triton, with no
# network. Installs hrrkit without dependencies, runs every test of tests/ops and tests/nn on CUDA with
# the `gpu` hypothesis profile in fp32, bf16 and fp16, compiles every kernel for this GPU's arch
# (hrrkit kernels), then every registered benchmark at the target sizes plus a device-to-device copy
# that measures the bandwidth ceiling, and the measured ÷ predicted table. Writes raw JSON and logs to
# ${OUT:-benchmarks/results/<gpu-name>}/, the short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
unset TRITON_INTERPRET
GPU_NAME=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))") || {
  echo "no CUDA device: the GPU check needs one" >&2; exit 1; }
DEST=${OUT:-benchmarks/results/$GPU_NAME}
mkdir -p "$DEST"
python3 -m hrrkit env --json > "$DEST/env.json"
status=0
# every op and layer test (issue 19), fused paths on CUDA, three dtypes, the large hypothesis profile
python3 -m pytest tests/ops tests/nn --device cuda --dtype float32,bfloat16,float16 -p no:cacheprovider \
  --hypothesis-profile gpu -q -o junit_family=xunit2 --junitxml "$DEST/kernel_tests.xml" \
  2>&1 | tee "$DEST/kernel_tests.log" || status=1
# what this machine's Triton compiles (registers, spills, shared memory) next to the committed AOT report
python3 -m hrrkit kernels --arch "sm_$(python3 -c 'import torch; a, b = torch.cuda.get_device_capability(); print(a * 10 + b)')" \
  --json "$DEST/aot.json" > "$DEST/aot_table.txt" 2>&1 || status=1
rm -f "$DEST/bench.jsonl"
python3 -m hrrkit bench --device cuda --out "$DEST/bench.jsonl" --no-progress \
  2>&1 | tee "$DEST/bench_table.txt" || status=1
# measured fused time ÷ the AOT-notes prediction (benchmarks/results/aot-*/README.md), fp32 target sizes
python3 - "$DEST/bench.jsonl" <<'PY' | tee "$DEST/measured_vs_predicted.md" || status=1
import json, sys
from hrrkit.bench.aot import predictions
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
measured = {(r["op"], r["mode"]): r["median_ms"] for r in rows
            if r.get("variant") == "fused" and r.get("size_name") == "target" and r.get("dtype") == "float32"
            and r.get("median_ms")}
print("| op | mode | predicted µs | measured µs | measured / predicted |")
print("|---|---|---|---|---|")
for p in predictions():
    m = measured.get((p["op"], p["mode"]))
    ratio = f"{m * 1e3 / p['predicted_us']:.2f}" if m else "not measured"
    print(f"| {p['op']} | {p['mode']} | {p['predicted_us']} | {m * 1e3 if m else '-'} | {ratio} |")
PY
exit $status
