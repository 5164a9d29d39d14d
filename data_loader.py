"""Batch loaders of the toolkit (docs/REFERENCE.md §4), under their published module name.

``BucketingDataLoader`` / ``DistributedBucketingDataLoader`` read a prepro database;
``DynamicBatchingLoader`` reads a raw validation pair tsv. See ``lsp_data.loaders``.
"""

from lsp_data.loaders import (
    BucketingDataLoader,
    DataError,
    DistributedBucketingDataLoader,
    DynamicBatchingLoader,
)

__all__ = [
    "BucketingDataLoader",
    "DataError",
    "DistributedBucketingDataLoader",
    "DynamicBatchingLoader",
]
