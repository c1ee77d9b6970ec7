"""Dataset classes, one module per dataset, and the machinery they share.

Importing this package registers the built-in datasets, explicitly and in this order.
"""

from pd4ml.datasets.airshower import Airshower
from pd4ml.datasets.base import (
    ArrayWriter,
    Dataset,
    LoadMetadata,
    LoadResult,
    PreparedData,
    datasets,
    get,
    load,
    register,
    unregister,
)
from pd4ml.datasets.calice_ahcal import CaliceAHCAL
from pd4ml.datasets.higgsml import HiggsML
from pd4ml.datasets.ild_photon_showers import ILDPhotonShowers
from pd4ml.datasets.images import EOS, Spinodal
from pd4ml.datasets.smartbkg import SmartBKG
from pd4ml.datasets.top_tagging import TopTagging

#: The built-in datasets, in registration order.
BUILT_IN: tuple[type[Dataset], ...] = (
    HiggsML,
    TopTagging,
    SmartBKG,
    Spinodal,
    EOS,
    Airshower,
    CaliceAHCAL,
    ILDPhotonShowers,
)
for _dataset in BUILT_IN:
    register(_dataset)

__all__ = [
    "BUILT_IN",
    "EOS",
    "Airshower",
    "ArrayWriter",
    "CaliceAHCAL",
    "Dataset",
    "HiggsML",
    "ILDPhotonShowers",
    "LoadMetadata",
    "LoadResult",
    "PreparedData",
    "SmartBKG",
    "Spinodal",
    "TopTagging",
    "datasets",
    "get",
    "load",
    "register",
    "unregister",
]
