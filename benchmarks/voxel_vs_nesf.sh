#!/usr/bin/env bash
# NeSF vs the ICSG3D-style voxel autoencoder on icsg3d/test: the same training data (the recovered
# train split without the crystals whose ids are in val or test, validation on val), the same
# wall-clock budget, trained side by side on one CPU thread each, then evaluated with the same
# `nesf evaluate`. Usage: benchmarks/voxel_vs_nesf.sh [MINUTES] [OUT]
set -euo pipefail
MIN=${1:-15}
OUT=${2:-runs/voxel_vs_nesf}
DATA=${NESF_DATA_DIR:-../shared/data}/nesf_paper/icsg3d
mkdir -p "$OUT"
common=(--train "$DATA/train_recovered.extxyz" --val "$DATA/val.extxyz" --exclude "$DATA/test.extxyz"
        --exclude "$DATA/val.extxyz" --minutes "$MIN" --seed 0 --threads 1 --quiet)
nesf train "${common[@]}" --out "$OUT/nesf" > "$OUT/nesf.log" 2>&1 &
nesf train "${common[@]}" --out "$OUT/voxel" --model voxel --augment cubic > "$OUT/voxel.log" 2>&1 &
wait
for model in nesf voxel; do
  nesf evaluate --model "$OUT/$model/last.pt" "$DATA/test.extxyz" --json "$OUT/$model/eval_test.json" --quiet --threads 2
done
python benchmarks/summarize_evals.py --title "NeSF vs voxel autoencoder on icsg3d/test, $MIN minutes each" \
  --note "command: \`benchmarks/voxel_vs_nesf.sh $MIN\` (both trained at once, one CPU thread each)" \
  "NeSF (default preset)=$OUT/nesf/eval_test.json" "voxel (d=32)=$OUT/voxel/eval_test.json"
