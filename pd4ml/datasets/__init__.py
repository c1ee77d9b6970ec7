"""Dataset classes. Each module defines one dataset; importing this package registers them."""

from pd4ml.datasets.base import (
    ArrayWriter,
    Dataset,
    LoadMetadata,
    LoadResult,
    datasets,
    get,
    load,
    unregister,
)

__all__ = [
    "ArrayWriter",
    "Dataset",
    "LoadMetadata",
    "LoadResult",
    "datasets",
    "get",
    "load",
    "unregister",
]
