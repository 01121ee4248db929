"""The work behind each entrypoint: ``deepfake_exp.<name>`` parses the command line with Hydra
and calls ``deepfake_exp.tasks.<name>.run(cfg)``. Tasks may import any library package, never
an entrypoint."""
