#!/usr/bin/env bash
# The GPU check (design.md §7, issue 9): run on a machine that already has torch and triton, with no
# network. Installs hrrkit without dependencies, runs every kernel equivalence test on CUDA with the
# `gpu` hypothesis profile in fp32, bf16 and fp16, then every registered benchmark at the target sizes
# plus a device-to-device copy that measures the bandwidth ceiling. Writes raw JSON and logs to
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
python3 -m pytest -m kernel --device cuda --dtype float32,bfloat16,float16 -p no:cacheprovider \
  --hypothesis-profile gpu -q -o junit_family=xunit2 --junitxml "$DEST/kernel_tests.xml" \
  2>&1 | tee "$DEST/kernel_tests.log" || status=1
rm -f "$DEST/bench.jsonl"
python3 -m hrrkit bench --device cuda --out "$DEST/bench.jsonl" --no-progress \
  2>&1 | tee "$DEST/bench_table.txt" || status=1
exit $status
