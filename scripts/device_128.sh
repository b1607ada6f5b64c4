#!/usr/bin/env bash
# The 128 px models on one GPU in under 10 minutes: six pipelines side by side on one card, each capped
# by wall time, their iteration counts sized by a speed probe taken under the same contention.
#
#   OUT=/path/for/results HORSES=/path/to/weizmann_horse bash scripts/device_128.sh
#
# Runs (all 128 px, batch 32, generator width G / discriminator width D, U-Net base 16):
#   syn-E-g12   synthetic, config E, G 12, D 32      horse-E-g12   Weizmann horses, config E, G 12, D 32
#   syn-E-g24   synthetic, config E, G 24, D 32      horse-E-g24   horses, config E, G 24, D 32
#   syn-B-g12   synthetic, config B, G 12, D 32      horse-B-g12   horses, config B, G 12, D 32
# Selection, decided before any score was seen: the synthetic model with the best IoU on the synthetic
# *validation* split (500 images, disjoint from test); the horse model with the lowest FD-RotNet (the
# masks never choose, as the paper). Their bundles come back whole (fp16, split in 15 MiB parts: the
# transfer's file limit), every run's configs, logs, scores and sample grids in runs.tgz.
# LOCAL=1 runs the same flow on the CPU at toy sizes (a test of this script, minutes).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/device128-out}
HORSES=${HORSES:-.carry/weizmann_horse}
RUNS=${RUNS:-/tmp/device128-runs}
DEADLINE=${DEADLINE:-545}  # seconds after start by which every pipeline is stopped and results packed
mkdir -p "$OUT" "$RUNS"
exec > >(tee -a "$OUT/driver.log") 2>&1
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0)) s] $*"; }

if [ "${LOCAL:-0}" = 1 ]; then
  DEV=cpu; GAN_MIN=0.4; UNET_MIN=0.2; ROT=2; FD_N=16; UNET_STEPS=6; UNET_BATCH=4; VAL=8; WORKERS=2; PROBE=1; WARM=0
else
  DEV=cuda; GAN_MIN=4.3; UNET_MIN=1.3; ROT=800; FD_N=0; UNET_STEPS=3000; UNET_BATCH=64; VAL=500; WORKERS=14
  PROBE=20; WARM=5
fi
say "start; device $DEV"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# 1. data (CPU) beside a smoke test of every code path the runs take (32 px, a few steps, this device)
python3 -m training.make_dataset --size 128 --splits train val test --workers $WORKERS --quiet \
  > "$RUNS/data.log" 2>&1 &
data_pid=$!
smoke=(--preset tiny --device $DEV --precision fp32 --gan-d-width 8 --half --no-progress)
timeout 240 python3 -m training.pipeline "${smoke[@]}" --out "$RUNS/smoke-syn" > "$RUNS/smoke-syn.log" 2>&1 &
s1=$!
timeout 240 python3 -m training.pipeline "${smoke[@]}" --ablation B --data "folder:$HORSES" \
  --diffaugment color,translation,cutout --out "$RUNS/smoke-horse" > "$RUNS/smoke-horse.log" 2>&1 &
s2=$!
ok=1
wait $s1 || { ok=0; say "SMOKE synthetic FAILED"; tail -40 "$RUNS/smoke-syn.log"; }
wait $s2 || { ok=0; say "SMOKE horse FAILED"; tail -40 "$RUNS/smoke-horse.log"; }
wait $data_pid || { ok=0; say "DATA FAILED"; tail -20 "$RUNS/data.log"; }
cat "$RUNS/data.log"
if [ $ok = 0 ]; then
  say "stopping early: fix the failure above"
  exit 3
fi
say "smoke tests and data done"

# 2. the runs, and their contended speed (ms per GAN iteration, all probes at once)
declare -A ARGS
source "$(dirname "$0")/device_128_flags.sh"  # D_WIDTH, syn_flags, run_flags
common=$(run_flags $ROT $UNET_BATCH $UNET_STEPS $VAL $GAN_MIN $UNET_MIN)
syn=$(syn_flags)
horse="--preset horse128 --data folder:$HORSES"
ARGS[syn-E-g12]="$syn --ablation E --gan-width 12"
ARGS[syn-E-g24]="$syn --ablation E --gan-width 24"
ARGS[syn-B-g12]="$syn --ablation B --gan-width 12"
ARGS[horse-E-g12]="$horse --ablation E --gan-width 12"
ARGS[horse-E-g24]="$horse --ablation E --gan-width 24"
ARGS[horse-B-g12]="$horse --ablation B --gan-width 12"
NAMES="syn-E-g12 syn-E-g24 syn-B-g12 horse-E-g12 horse-E-g24 horse-B-g12"

probe_args() {  # pipeline flags -> the probe's --set FIELD=VALUE pairs (preset and data stay flags)
  local out="" key
  set -- $1
  while [ $# -gt 0 ]; do
    case $1 in
      --preset|--data) out="$out $1 $2";;
      --*) key=${1#--}; out="$out --set ${key//-/_}=$2";;
    esac
    shift 2
  done
  echo "$out --set precision=fp32 --set device=$DEV"
}
pids=()  # waited for by pid: a bare `wait` would also wait for the tee above, forever
for n in $NAMES; do
  python3 benchmarks/bench_pipeline_iter.py $(probe_args "${ARGS[$n]} --gan-d-width $D_WIDTH") --iters $PROBE --warmup $WARM --json \
    > "$RUNS/probe-$n.json" 2> "$RUNS/probe-$n.err" &
  pids+=($!)
done
wait "${pids[@]}"
for n in $NAMES; do echo "probe $n: $(cat "$RUNS/probe-$n.json")"; done
say "probes done"

pids=()
for n in $NAMES; do
  ms=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ms_median'])" "$RUNS/probe-$n.json" \
       2>/dev/null || echo 250)
  # 85 % of the GAN's minutes at the probed speed (FD, samples and checkpoints take the rest)
  iters=$(python3 -c "import sys; print(max(20, int(0.85 * float(sys.argv[1]) * 60000 / float(sys.argv[2]))))" \
          "$GAN_MIN" "$ms")
  fd_every=$((iters / 10 > 1 ? iters / 10 : 1))
  fd=""
  [ "$FD_N" != 0 ] && fd="--fd-samples $FD_N"  # toy sizes (LOCAL=1) only
  say "launch $n: $iters GAN iterations (probe $ms ms), FD every $fd_every"
  left=$((DEADLINE - ($(date +%s) - T0)))
  left=$((left > 60 ? left : 60))  # (timeout 0 would mean none)
  timeout $left python3 -m training.pipeline ${ARGS[$n]} $common $fd --gan-iters $iters --fd-every $fd_every \
    --device $DEV --precision fp32 --threads 2 --half --no-progress --out "$RUNS/$n" > "$RUNS/$n.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
say "pipelines ended"
for n in $NAMES; do echo "== $n: $(tail -c 400 "$RUNS/$n.log")"; done

# 3. selection (decided in advance, see the header), then what comes back
for n in syn-E-g12 syn-E-g24 syn-B-g12; do
  [ -f "$RUNS/$n/bundle.safetensors" ] || continue
  python3 -m training.evaluate --unet "$RUNS/$n/bundle.safetensors" --data synthetic --split val --json \
    --device $DEV > "$RUNS/$n/val.json" 2> "$RUNS/$n/val.err" || say "val evaluation of $n failed"
done
python3 scripts/pack_device_runs.py --runs "$RUNS" --out "$OUT" --names $NAMES
say "done"
