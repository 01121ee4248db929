"""Face detection and cropping: frames in, boxes and crops out. Knows nothing of models."""
