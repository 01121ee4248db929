"""Source adapters: one small module per dataset layout, each yielding ``MediaRecord``s."""

from deepfake_exp.data.sources.base import DatasetRootError, Source

__all__ = ["DatasetRootError", "Source"]
