#!/usr/bin/env bash
# The paper's central comparison on real photos: configuration B against E (B + the equivariance loss,
# eq. 8, its weight ramped to the paper's 0.5 over 400/810 of the run and held there for the rest), at an
# equal number of GAN iterations, two seeds each, everything else the 0.35-ceiling screen's settings
# (64², projected D, mask ceiling 0.35, horse preset). E's eq. (8) reads ImageNet EfficientNet-Lite0
# features (--perceptual effnet). Each run: FD-Lite0 picks the GAN checkpoint (no masks), a 300-step U-Net
# learns on its pairs, the masks of the folder score it once (128² protocol, dataset-level).
#
#   OUT=runs/screen64 bash scripts/horse_b_vs_e.sh [RUN ...]      RUN in B-s0 B-s1 E-s0 E-s1 F-s0 F-s1
# B-s0 is the 0.35-ceiling screen itself (runs/screen64/B-projected-ceil035, seed 0). F is B with a
# per-sample floor on the mask area (PerturbGAN's L_size at 0.15) beside the batch-mean ceiling. A run
# stopped by a session's end resumes when the same line is run again.
set -euo pipefail
OUT=${OUT:-runs/screen64}
DATA=${DATA:-folder:../shared/data/weizmann_horse}
ITERS=${ITERS:-1470}
RUNS=${*:-B-s1 E-s0 E-s1}
for run in $RUNS; do
  case $run in
    B-s0) dir="$OUT/B-projected-ceil035"; flags=(--ablation B --seed 0) ;;
    B-s1) dir="$OUT/B-projected-ceil035-s1"; flags=(--ablation B --seed 1) ;;
    E-s0) dir="$OUT/E-projected-ceil035"; flags=(--ablation E --perceptual effnet --seed 0) ;;
    E-s1) dir="$OUT/E-projected-ceil035-s1"; flags=(--ablation E --perceptual effnet --seed 1) ;;
    F-s0) dir="$OUT/B-projected-ceil035-floor015"; flags=(--ablation B --mask-floor 0.15 --seed 0) ;;
    F-s1) dir="$OUT/B-projected-ceil035-floor015-s1"; flags=(--ablation B --mask-floor 0.15 --seed 1) ;;
    *) echo "unknown run $run (B-s0 B-s1 E-s0 E-s1 F-s0 F-s1)" >&2; exit 2 ;;
  esac
  if [ -f "$dir/config.json" ]; then
    python -m training.pipeline --out "$dir" --resume --threads 1 --no-progress
  else
    python -m training.pipeline --preset horse --data "$DATA" --out "$dir" "${flags[@]}" --disc projected \
      --mask-ceiling 0.35 --gan-iters "$ITERS" --gan-minutes 0 --unet-steps 300 --unet-minutes 0 --fd-every 250 \
      --threads 1 --no-progress
  fi
done
