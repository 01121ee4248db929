"""Preprocessing: records -> faces folder (crops, parts, manifest), resumable and shardable.

``runner`` extracts (resume, shards, fingerprints), ``merge`` assembles splits and the
manifest, ``settings`` records what crops depend on, ``boxes`` lets a fake reuse its
original's boxes, ``tracks`` links faces across frames.
"""
