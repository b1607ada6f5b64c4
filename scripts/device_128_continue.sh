#!/usr/bin/env bash
# Continues the synthetic model that scripts/device_128.sh selected, alone on the GPU, for the device time
# that run left (about 4 minutes of a 15-minute lease): GAN from its weights (fresh optimisers; E_pi
# fresh, the app bundle has none), then a new U-Net, test and validation scores, and the bundle.
#
#   OUT=/path/for/results INIT=syn-B-g12.safetensors bash scripts/device_128_continue.sh
#
# Which of the two ships was fixed before either was scored: the higher IoU on the synthetic
# validation split (scripts/device_128.sh's rule).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/device128c-out}
RUNS=${RUNS:-/tmp/device128c-runs}
INIT=${INIT:-.carry/init/syn-B-g12.safetensors}
GAN_MIN=${GAN_MIN:-2.2}
UNET_MIN=${UNET_MIN:-0.7}
DEV=${DEV:-cuda}
mkdir -p "$OUT" "$RUNS"
exec > >(tee -a "$OUT/driver.log") 2>&1
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0)) s] $*"; }
say "start"
python3 -m training.make_dataset --size 128 --splits train val test --workers 14 --quiet || exit 3
name=syn-B-g12-cont
source "$(dirname "$0")/device_128_flags.sh"  # the flags of the run it continues (device_128.sh)
timeout 240 python3 -m training.pipeline $(syn_flags) --ablation B --gan-width 12 --gan-init "$INIT" \
  $(run_flags 800 64 3000 500 $GAN_MIN $UNET_MIN) --gan-iters 4000 --fd-every 250 --device $DEV --precision fp32 --threads 4 --half --no-progress \
  --out "$RUNS/$name" > "$RUNS/$name.log" 2>&1
say "pipeline exit $?"
tail -c 600 "$RUNS/$name.log"
python3 -m training.evaluate --unet "$RUNS/$name/bundle.safetensors" --data synthetic --split val --json \
  --device $DEV > "$RUNS/$name/val.json" 2> "$RUNS/$name/val.err"
tail -1 "$RUNS/$name/val.json"
python3 scripts/pack_device_runs.py --runs "$RUNS" --out "$OUT" --names $name
say "done"
