"""segshift: semantic segmentation across the synthetic-to-real gap."""

__version__ = "0.1.0"
