#!/usr/bin/env bash
# The default candidate's rule, as written in checkpoints/README.md before its scores were read:
# a 250-step checkpoint for which the equivariance command prints "met" -> a U-Net by stage 5's recipe ->
# synthetic-val IoU >= 0.85 and ACC >= 0.95 -> (only then) the fp16 bundle and its test scores, read once.
# Prints the decision; ships nothing. Resumable: run it again with the same OUT after a stop.
# CONTROL=1 scores a control the same way (equivariance measured but not required; no bundle, no test split).
#
#   CAND=runs/default128-equi-pix/step-1500.safetensors OUT=runs/default-cand1500 bash scripts/default_candidate.sh
#   CONTROL=1 CAND=runs/default128-B-control/gan/step-4450.safetensors OUT=runs/control-B bash scripts/default_candidate.sh
set -eu
CAND=${CAND:?set CAND to a step-<N>.safetensors checkpoint}
OUT=${OUT:?set OUT to a folder for the U-Net and the bundle}
THREADS=${THREADS:-2}
MINUTES=${MINUTES:-0}
CONTROL=${CONTROL:-0}
mkdir -p "$OUT"
if [ ! -f "$OUT/equivariance.json" ]; then
  python -m training.equivariance "$CAND" --json | tail -n 1 > "$OUT/equivariance.tmp"
  mv "$OUT/equivariance.tmp" "$OUT/equivariance.json"
fi
python - "$OUT/equivariance.json" "$CONTROL" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if not r["target_met"] and sys.argv[2] != "1":
    ratios = {d: round(v["ratio"], 3) for d, v in r["directions"].items()}
    sys.exit(f"not a candidate: the equivariance target is not met {ratios}")
PY
RESUME=()
[ -f "$OUT/unet/state.safetensors" ] && RESUME=(--resume)
python -m training.train_unet --gan "$CAND" --out "$OUT/unet" --size 128 --steps 1200 --batch 32 --lr 1e-3 \
  --lr-drop-step 800 --base 16 --depth 4 --seed 0 --val-size 500 --val-every 200 --ckpt-every 60 \
  --max-minutes "$MINUTES" --device cpu --threads "$THREADS" --precision fp32 --no-progress "${RESUME[@]}"
python -m training.evaluate --unet "$OUT/unet/best.safetensors" --data synthetic --split val --json \
  | tail -n 1 > "$OUT/val.json"
python - "$OUT/val.json" "$CONTROL" <<'PY' || exit 0
import json, sys
s = json.load(open(sys.argv[1]))
ships = s["iou"] >= 0.85 and s["acc"] >= 0.95
if sys.argv[2] == "1":  # a control is scored, never bundled
    print(f"control: val IoU {s['iou']:.3f} ACC {s['acc']:.3f} (n={s['n']})")
    sys.exit(1)
print(f"val IoU {s['iou']:.3f} ACC {s['acc']:.3f} (n={s['n']}) -> "
      f"{'ships: bundle and test next' if ships else 'does not ship: try the next candidate'}")
sys.exit(0 if ships else 1)
PY
python -m training.bundle --gan "$CAND" --unet "$OUT/unet/best.safetensors" --out "$OUT/bundle.safetensors" \
  --half --split test
