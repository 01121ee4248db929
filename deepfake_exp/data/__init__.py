"""Dataset layouts, synthetic data, video decoding, manifests, splits and the datamodule."""
