"""Preprocessing: records -> faces folder (crops, parts, manifest), resumable and shardable.

``runner`` extracts (resume, shards), ``settings`` records what crops depend on (stamps,
fingerprints, ``extraction.json``), ``parts`` names a video's files under ``parts/``,
``merge`` assembles splits and the manifest, ``boxes`` lets a fake reuse its original's
boxes, ``tracks`` links faces across frames, ``lock`` keeps one writer per folder or shard.
"""
