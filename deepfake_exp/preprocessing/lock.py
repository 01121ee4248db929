"""One writer per faces folder, or per shard of it: two runs never interleave parts.

An unsharded run (and every merge) holds ``<out_dir>/.lock``; shard jobs of an array run side
by side, each holding its own shard's lock, and none of them while an unsharded run holds
the folder. A second holder fails with ``LockedError`` naming the live one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepfake_exp.utils.lock import LOCK_NAME, exclusive_lock

WHAT = "preprocessing"


def shard_lock_name(shard: int, num_shards: int) -> str:
    """Lock file of one shard job: shards of an array job run side by side."""
    return f"{LOCK_NAME}-shard-{shard}-of-{num_shards}"


@contextmanager
def preprocessing_lock(out_dir: Path, shard: int = 0, num_shards: int = 1) -> Iterator[None]:
    """Hold a faces folder for one preprocessing process, or one shard of it for a shard job.

    An unsharded run (and every merge) holds ``<out_dir>/.lock`` and first checks that no shard
    job holds its own lock; a shard job checks that no unsharded run holds the folder, then
    holds only its shard's lock. Raises ``LockedError`` naming the live holder.
    """
    if num_shards == 1:
        with exclusive_lock(out_dir, what=WHAT):
            for held in sorted(out_dir.glob(f"{LOCK_NAME}-shard-*")):
                with exclusive_lock(out_dir, what=f"{WHAT} ({held.name})", name=held.name):
                    pass
            yield
        return
    with exclusive_lock(out_dir, what=WHAT):
        pass
    name = shard_lock_name(shard, num_shards)
    with exclusive_lock(out_dir, what=f"{WHAT} (shard {shard} of {num_shards})", name=name):
        yield
