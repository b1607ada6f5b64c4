#!/usr/bin/env bash
# The horse candidate's rule, as written in checkpoints/README.md before its scores were read:
# the GAN checkpoint with the lowest FD-Lite0 (no masks) -> a U-Net on its streamed pairs (the horse
# preset's U-Net budget) -> a bundle -> one score on the 250 photos. Prints the decision; ships nothing.
#
#   RUN=runs/horse-ceil05-long DATA=folder:../shared/data/weizmann_horse bash scripts/horse_candidate.sh
#   GAN=checkpoints/horse.safetensors RUN=runs/horse-lite0-unet UNET_FLAGS="--encoder lite0" bash scripts/horse_candidate.sh
# The bar is the shipped checkpoints/horse.safetensors' own scores (its metadata), read at decision time.
set -eu
RUN=${RUN:-runs/horse-ceil05-long}
DATA=${DATA:-folder:../shared/data/weizmann_horse}
THREADS=${THREADS:-2}
GAN=${GAN:-$RUN/gan/best.safetensors}   # the GAN (or bundle) whose generator streams the pairs
UNET_FLAGS=${UNET_FLAGS:-}   # extra train_unet flags (e.g. --encoder lite0)
# shellcheck disable=SC2086  # UNET_FLAGS is a list of flags
python -m training.train_unet --out "$RUN/unet" --gan "$GAN" --source stream --size 64 --steps 1200 --batch 32 \
  --val-every 250 --threads "$THREADS" --no-progress $UNET_FLAGS
python -m training.bundle --gan "$GAN" --unet "$RUN/unet/best.safetensors" --out "$RUN/bundle.safetensors" --half \
  --data "$DATA" --split test
python -m training.evaluate --unet "$RUN/bundle.safetensors" --data "$DATA" --json | tail -n 1 > "$RUN/eval.json"
python - "$RUN/eval.json" <<'PY'
import json, sys
from elgan.checkpoint import load_bundle
s = json.load(open(sys.argv[1]))
old = load_bundle("checkpoints/horse.safetensors").metadata["metrics"]  # the shipped horse bundle's own scores
ships = s["iou"] > old["iou"] and s["acc"] > old["acc"]
print(f"IoU {s['iou']:.3f} ACC {s['acc']:.3f} mIoU {s['miou']:.3f} (n={s['n']}); shipped bundle IoU {old['iou']:.3f} "
      f"ACC {old['acc']:.3f}; targets 0.65 / 0.88 -> {'replaces' if ships else 'does not replace'} "
      "checkpoints/horse.safetensors")
PY
