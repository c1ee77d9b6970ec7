"""pd4ml — physics data for machine learning.

One-line access to the benchmark datasets of fundamental physics, fetched lazily from their
official versioned archives, verified, and cached once as memory-mappable arrays::

    import pd4ml
    X, y = pd4ml.load("top_tagging", "train")
    pd4ml.datasets()          # registered dataset classes, in order
    pd4ml.get("TopTagging")   # a class by name or alias

The original pd4ml's classes, with its signatures and its exact data, are in :mod:`pd4ml.pd4ml`
(``from pd4ml.pd4ml import TopTagging, Spinodal, EOSL, Airshower, Belle``); ``EOSL``, ``Belle``
and ``lpd`` are also here, as in the original.

Configuration is by environment variables (``PD4ML_DATA_DIR``, ``PD4ML_SHARED_DATA``,
``PD4ML_MIRROR``, ``PD4ML_OFFLINE``); see :mod:`pd4ml.config`.
"""

import pd4ml.adapters  # noqa: F401  (registers the framework views: torch, pyg, tf)
from pd4ml._version import __version__
from pd4ml.citation import cite
from pd4ml.config import Settings
from pd4ml.datasets import (
    EOS,
    Airshower,
    CaliceAHCAL,
    Dataset,
    HiggsML,
    ILDPhotonShowers,
    LoadMetadata,
    LoadResult,
    PreparedData,
    SmartBKG,
    Spinodal,
    TopTagging,
    datasets,
    get,
    load,
)
from pd4ml.errors import (
    ChecksumMismatchError,
    ConversionError,
    DownloadError,
    OfflineError,
    Pd4mlError,
    UnavailableError,
    UnknownNameError,
)
from pd4ml.pd4ml import EOSL, Belle, lpd  # the original pd4ml's names (see pd4ml.pd4ml)

__all__ = [
    "EOS",
    "EOSL",
    "Airshower",
    "Belle",
    "CaliceAHCAL",
    "ChecksumMismatchError",
    "ConversionError",
    "Dataset",
    "DownloadError",
    "HiggsML",
    "ILDPhotonShowers",
    "LoadMetadata",
    "LoadResult",
    "OfflineError",
    "Pd4mlError",
    "PreparedData",
    "Settings",
    "SmartBKG",
    "Spinodal",
    "TopTagging",
    "UnavailableError",
    "UnknownNameError",
    "__version__",
    "cite",
    "datasets",
    "get",
    "load",
    "lpd",
]
