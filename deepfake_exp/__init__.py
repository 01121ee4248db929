"""deepfake_exp: a Hydra-configured experiment pipeline for deepfake face detection."""

__version__ = "0.1.0"
