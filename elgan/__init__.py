"""ELGAN Studio: unsupervised foreground-background segmentation with Equivariant Layered GANs."""

__version__ = "0.1.0"
