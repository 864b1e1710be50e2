#!/usr/bin/env bash
# Equal wall-clock comparison of the presets on lim_l6: train each for MINUTES, then evaluate
# both on the first N test crystals. Usage: benchmarks/preset_comparison.sh [MINUTES] [N] [OUT]
set -euo pipefail
MIN=${1:-10}
N=${2:-60}
OUT=${3:-runs/preset_comparison}
DATA=${NESF_DATA_DIR:-../shared/data}/nesf_paper/lim_l6
mkdir -p "$OUT"
python - "$DATA/test.extxyz" "$OUT/test_subset.extxyz" "$N" <<'PY'
import sys
from nesf.data.readers import read_crystals
from nesf.io.writers import write_extxyz
write_extxyz(sys.argv[2], read_crystals(sys.argv[1])[: int(sys.argv[3])])
PY
for preset in paper default; do
  nesf train --train "$DATA/train.extxyz" --val "$DATA/val.extxyz" --out "$OUT/$preset" --preset "$preset" \
    --minutes "$MIN" --seed 0 --threads 2 --quiet
  nesf evaluate --model "$OUT/$preset/best.pt" "$OUT/test_subset.extxyz" --json "$OUT/$preset/eval.json" \
    --quiet --threads 2
done
