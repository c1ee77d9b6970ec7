"""Small synthetic files of every dataset, served through the loopback archive server: the
cases that the adapter and fingerprint tests run through the real download → convert →
prepare path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pd4ml import (
    EOS,
    Airshower,
    CaliceAHCAL,
    HiggsML,
    ILDPhotonShowers,
    SmartBKG,
    Spinodal,
    TopTagging,
)
from pd4ml.config import Settings
from pd4ml.datasets.base import Dataset, PreparedData
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    synthetic_variant,
    write_ahcal_npz,
    write_airshower_npz,
    write_higgsml_csv,
    write_pd4ml_image_npz,
    write_photon_showers_hdf5,
    write_smartbkg_npz,
    write_top_tagging_h5,
)
from tests.conftest import FAST_RETRY


@dataclass(frozen=True)
class Case:
    dataset: type[Dataset]
    key: str
    write: Callable[[Path], Path]
    template_version: str | None = None
    kind: str = "zenodo"
    params: dict[str, Any] = field(default_factory=dict)
    graph: bool = True


CASES: dict[str, Case] = {
    "top_tagging": Case(
        TopTagging,
        "train.h5",
        lambda path: write_top_tagging_h5(path, 260, seed=2),
        params={"n_constituents": 40, "k": 5},
    ),
    "smartbkg": Case(
        SmartBKG,
        "6_belle_selective_400k.npz",
        lambda path: write_smartbkg_npz(path, n_train=300, n_test=60, seed=3),
        "pd4ml-2021",
    ),
    "spinodal": Case(
        Spinodal,
        "2_spinodal_29k.npz",
        lambda path: write_pd4ml_image_npz(path, "spinodal", 250, 40, seed=4),
        "pd4ml-2021",
    ),
    "eos": Case(
        EOS,
        "3_EOSL_or_EOSQ_180k.npz",
        lambda path: write_pd4ml_image_npz(path, "eos", 250, 40, seed=5),
        "pd4ml-2021",
        params={"form": "nodes"},
    ),
    "airshower": Case(
        Airshower,
        "4_airshower_100k_regression.npz",
        lambda path: write_airshower_npz(path, 200, 40, seed=6),
        "pd4ml-2021",
    ),
    "calice_ahcal": Case(
        CaliceAHCAL,
        "ahcal_pions_sps2018.npz",
        lambda path: write_ahcal_npz(path, 120, seed=7),
        "sps-2018-numpy",
    ),
    "higgsml": Case(
        HiggsML,
        "atlas-higgs-challenge-2014-v2.csv.gz",
        lambda path: write_higgsml_csv(path, 3000, seed=8),
        kind="cernopendata",
        graph=False,
    ),
    "ild_photon_showers": Case(
        ILDPhotonShowers,
        "photons.hdf5",
        lambda path: write_photon_showers_hdf5(path, 300, seed=9),
        graph=False,
    ),
}
GRAPH_CASES = [name for name, case in CASES.items() if case.graph]


class World:
    """One archive server and cache; each dataset is served once and prepared once."""

    def __init__(self, root: Path, server: ArchiveServer) -> None:
        self.root = root
        self.server = server
        self.settings = Settings(data_dir=root / "cache", retry=FAST_RETRY, progress="off")
        self.variants: dict[str, type[Dataset]] = {}
        self.prepared: dict[tuple[str, bool], PreparedData] = {}

    def variant(self, name: str) -> type[Dataset]:
        if name not in self.variants:
            case = CASES[name]
            path = case.write(self.root / name / case.key)
            record = 7000 + len(self.variants)
            if case.kind == "cernopendata":
                self.server.add_cernopendata_record(
                    record, {case.key: path}, eos_directory="/eos/opendata/test"
                )
            else:
                self.server.add_zenodo_record(record, {case.key: path})
            self.variants[name] = synthetic_variant(
                case.dataset,
                self.server.url,
                record,
                {case.key: path},
                template_version=case.template_version,
                kind=case.kind,
            )
        return self.variants[name]

    def data(self, name: str, graph: bool | None = None) -> PreparedData:
        case = CASES[name]
        graph = case.graph if graph is None else graph
        if (name, graph) not in self.prepared:
            self.prepared[name, graph] = self.variant(name).load_data(
                "train", graph=graph, settings=self.settings, **case.params
            )
        return self.prepared[name, graph]
