"""Training infrastructure: the loops that fit the method's networks, and what they run on.

The trainers (`gan_trainer`: eq. (9)'s two phases; `unet_trainer`: the segmenter on synthetic pairs;
`rotnet_trainer`: the self-supervised perceptual net), the mechanics they share (`trainloop`: resume,
atomic states, time caps, cadence), the machines under them (`distributed`: DDP under torchrun;
`precision`: bf16 / fp16 autocast) and what they record (`runlog`: JSON-lines logs; `instruments`:
the frozen measuring nets and layer-health readings). The method itself (networks, perturbation,
losses, synthesis, evaluation, bundles) lives one level up and never imports from here; only the
modules that run or read training (`pipeline`, `ablation`) do.
"""
