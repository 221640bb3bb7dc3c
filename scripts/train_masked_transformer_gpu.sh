#!/usr/bin/env bash
# Masked image training at the reference's size on one data-centre GPU, about 8 minutes:
# the masked network and its unmasked baseline (same budget) trained side by side.
#
# Network: SwinIR's layout as the reference (embedding 60, 6 heads, four residual groups
# of six window-attention blocks, window 8, per-pixel tokens), --widths 60,6,6,6,6,6.
# Training: Gaussian sigma 15, L1, Adam, weight EMA 0.999, crops 64; masked: 80-90% of
# the pixels set to -0.1 and 75% of the tokens zeroed before every QKV projection.
# The cosine decay follows the time budget (--max-seconds), so the two runs end together.
#
#   OUT=training_logs/gpu bash scripts/train_masked_transformer_gpu.sh
#
# Tested on the CPU with a tiny network (tests/training/test_gpu_script.py):
#   MIT_DEVICE=cpu MIT_WIDTHS=8,2,1 MIT_ITERATIONS=2 MIT_SECONDS=60 MIT_BATCH=2 \
#     MIT_DATA=folder OUT=/tmp/x bash scripts/train_masked_transformer_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-training_logs/gpu}
PYTHON=${PYTHON:-python}
DATA=${MIT_DATA:-../shared/data/train/Train400}
mkdir -p "$OUT"
common=(
  --data "$DATA" --device "${MIT_DEVICE:-cuda}" --widths "${MIT_WIDTHS:-60,6,6,6,6,6}"
  --batch "${MIT_BATCH:-32}" --crop 64 --lr "${MIT_LR:-4e-4}" --seed 0
  --iterations "${MIT_ITERATIONS:-200000}" --max-seconds "${MIT_SECONDS:-420}"
  --val-every "${MIT_VAL_EVERY:-1000}"
)
"$PYTHON" -m napari_masked_denoise train masked-transformer "${common[@]}" \
  --log "$OUT/masked-transformer-large.jsonl" --output "$OUT/masked-transformer-large.pt" \
  > "$OUT/masked.out" 2>&1 &
masked=$!
"$PYTHON" -m napari_masked_denoise train masked-transformer --no-mask "${common[@]}" \
  --log "$OUT/masked-transformer-large-unmasked.jsonl" \
  --output "$OUT/masked-transformer-large-unmasked.pt" > "$OUT/unmasked.out" 2>&1 &
unmasked=$!
status=0
wait "$masked" || status=$?
wait "$unmasked" || status=$?
tail -n 3 "$OUT/masked.out" "$OUT/unmasked.out"
exit "$status"
