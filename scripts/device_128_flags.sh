# The pipeline flags that the 128 px GPU runs share; sourced by device_128.sh and device_128_continue.sh so
# a continued run is trained as the run it continues. Not a program of its own.
#   syn_flags                          the synthetic-data preset and its FD sample count
#   run_flags ROT UNET_BATCH UNET_STEPS VAL GAN_MIN UNET_MIN
#                                      widths, RotNet steps, U-Net budget, validation size, wall-time caps
D_WIDTH=32  # every 128 px run's discriminator width
syn_flags() { echo "--preset paper --data synthetic --fd-samples 1000"; }
run_flags() {
  echo "--gan-d-width $D_WIDTH --rotnet-iters $1 --unet-base 16 --unet-batch $2 --unet-steps $3" \
       "--val-size $4 --val-every 500 --gan-minutes $5 --unet-minutes $6"
}
