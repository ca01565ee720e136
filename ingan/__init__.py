"""ingan: train a per-image InGAN generator and serve it for real-time retargeting.

Importing this package is cheap: torch, onnxruntime and tensorrt load only in the
modules that need them.
"""

__version__ = "0.1.0"
