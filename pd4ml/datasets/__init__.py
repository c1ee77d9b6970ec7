"""Dataset classes. Each module defines one dataset; importing this package registers them."""

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
    unregister,
)
from pd4ml.datasets.calice_ahcal import CaliceAHCAL
from pd4ml.datasets.higgsml import HiggsML
from pd4ml.datasets.ild_photon_showers import ILDPhotonShowers
from pd4ml.datasets.images import EOS, Spinodal
from pd4ml.datasets.smartbkg import SmartBKG
from pd4ml.datasets.top_tagging import TopTagging

__all__ = [
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
    "unregister",
]
