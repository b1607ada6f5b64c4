#!/usr/bin/env bash
# Screening of the pretrained features on a folder of photos (64², one CPU thread per run):
# the paper's D vs the projected D, for configs B and E, at the same compute budget per run.
#
#   scripts/screen_features.sh DATA_FOLDER OUT_ROOT [CORE_MINUTES] [RUN ...]
#   scripts/screen_features.sh ../shared/data/weizmann_horse /work/runs/screen64 30 B-paper B-projected
#   scripts/screen_features.sh synthetic /work/runs/screen64-embedded 30 B-paper B-projected
#
# DATA_FOLDER "synthetic" screens the embedded data instead (cpu preset, scored on its test split); that
# screen is a sanity check (is the synthetic case still working?) and runs half of CORE_MINUTES.
# The budget is in core-minutes of GAN training, turned into iterations by the single-thread speed of
# each configuration (benchmarks/bench_features.py --sizes 64 --threads 1, width 12, batch 32), so that a
# run stopped by a session's end resumes to the same length (rerun the same line: it resumes). The GAN's
# checkpoint is chosen by FD-Lite0 (no masks); the U-Net (300 steps) learns on its pairs; the masks of
# the folder only score the result (training.evaluate, 128² protocol, dataset-level).
set -euo pipefail
DATA=${1:?data folder}; OUT=${2:?output root}; MIN=${3:-30}; shift 3 || true
RUNS=${*:-B-paper B-projected E-paper E-projected}
if [ "$DATA" = synthetic ]; then MIN=$(python -c "print($MIN / 2)"); fi
# seconds per iteration at 64², 1 thread (bench_features.py, 2026-12-06): the budget's exchange rate
declare -A SPI=([B-paper]=0.51 [B-projected]=0.87 [E-paper]=1.10 [E-projected]=1.46)
declare -A FLAGS=([B-paper]="--ablation B --disc paper" [B-projected]="--ablation B --disc projected"
                  [E-paper]="--ablation E --disc paper --perceptual rotnet"
                  [E-projected]="--ablation E --disc projected --perceptual effnet")
for run in $RUNS; do
  iters=$(python -c "print(int($MIN * 60 / ${SPI[$run]}))")
  dir="$OUT/$run"
  resume=""; [ -f "$dir/config.json" ] && resume="--resume"
  if [ -n "$resume" ]; then
    python -m training.pipeline --out "$dir" --resume --threads 1 --no-progress
  else
    if [ "$DATA" = synthetic ]; then data=(--preset cpu --data synthetic); else data=(--preset horse --data "folder:$DATA"); fi
    # shellcheck disable=SC2086
    python -m training.pipeline "${data[@]}" --out "$dir" ${FLAGS[$run]} \
      --gan-iters "$iters" --gan-minutes 0 --unet-steps 300 --unet-minutes 0 --fd-every 250 --threads 1 \
      --no-progress
  fi
done
