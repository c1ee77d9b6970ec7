"""Every dataset's synthetic raw files, written in the official layout and served by the
loopback archive server as an archive record: the offline stand-in for the real archives that
the demo (``python -m pd4ml.bench --source demo``), the learning tests and the shared-model
benchmark go through.

A :class:`ServedFiles` is a plain, picklable description (server URL, record, file paths and
the layout they imitate), so a worker process can rebuild the dataset class that downloads them
(:meth:`ServedFiles.dataset`) without the class itself being sent. Everything loaded through it
is marked synthetic; the events are random numbers with a learnable signal, not physics.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from pd4ml.datasets.airshower import Airshower
from pd4ml.datasets.base import Dataset
from pd4ml.datasets.calice_ahcal import CaliceAHCAL
from pd4ml.datasets.higgsml import HiggsML
from pd4ml.datasets.ild_photon_showers import ILDPhotonShowers
from pd4ml.datasets.images import EOS, Spinodal
from pd4ml.datasets.smartbkg import SmartBKG
from pd4ml.datasets.top_tagging import TopTagging
from pd4ml.testing.server import ArchiveServer
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

#: The marker of a completely written directory of files (it lists their keys).
COMPLETE = ".complete.json"

#: ``write(directory, n_train, n_test, seed) -> {file key: path}``
Writer = Callable[[Path, int, int, int], dict[str, Path]]


@dataclass(frozen=True)
class Synthetic:
    """How one dataset's synthetic files are written and served.

    Attributes:
        dataset: the real dataset class whose layout the files imitate.
        write: writes the files (``n_train`` and ``n_test`` events, generator ``seed``) into a
            directory and returns ``{file key: path}``.
        template_version: the manifest version whose file keys and splits the files take.
        kind: ``"zenodo"`` or ``"cernopendata"`` (how the server publishes the record).
        params: ``load_data`` parameters that keep the small synthetic sample small (for
            example fewer constituents per jet).
        graph: whether ``load_data(graph=True)`` is the dataset's graph form for GraphNet (False
            where GraphNet builds its own graph from the features).
        heldout: the splits scored as test (HiggsML: both official test sets).
    """

    dataset: type[Dataset]
    write: Writer
    template_version: str | None = None
    kind: str = "zenodo"
    params: Mapping[str, Any] = field(default_factory=dict)
    graph: bool = True
    heldout: tuple[str, ...] = ("test",)


def _top_tagging(directory: Path, n_train: int, n_test: int, seed: int) -> dict[str, Path]:
    # the three official files; the validation file gets a quarter of the training size
    return {
        "train.h5": write_top_tagging_h5(directory / "train.h5", n_train, seed=seed),
        "val.h5": write_top_tagging_h5(
            directory / "val.h5", max(n_train // 4, 2), seed=seed + 2, ttv=2
        ),
        "test.h5": write_top_tagging_h5(directory / "test.h5", n_test, seed=seed + 1, ttv=1),
    }


def _one(key: str, writer: Callable[[Path, int, int, int], Path]) -> Writer:
    def write(directory: Path, n_train: int, n_test: int, seed: int) -> dict[str, Path]:
        return {key: writer(directory / key, n_train, n_test, seed)}

    return write


def _ahcal(path: Path, n_train: int, n_test: int, seed: int) -> Path:
    # one file; the converter holds out a seeded, stratified test fraction
    return write_ahcal_npz(path, n_train + n_test, seed=seed)


def _higgsml(path: Path, n_train: int, n_test: int, seed: int) -> Path:
    # the converter assigns events by KaggleSet: about 30 % train + val, 70 % test
    return write_higgsml_csv(path, n_train + n_test, seed=seed)


def _photons(path: Path, n_train: int, n_test: int, seed: int) -> Path:
    return write_photon_showers_hdf5(path, n_train + n_test, seed=seed)


SYNTHETIC: dict[str, Synthetic] = {
    "top_tagging": Synthetic(TopTagging, _top_tagging, params={"n_constituents": 40, "k": 5}),
    "smartbkg": Synthetic(
        SmartBKG,
        _one(
            "6_belle_selective_400k.npz",
            lambda p, a, b, s: write_smartbkg_npz(p, n_train=a, n_test=b, seed=s),
        ),
        "pd4ml-2021",
    ),
    "spinodal": Synthetic(
        Spinodal,
        _one(
            "2_spinodal_29k.npz",
            lambda p, a, b, s: write_pd4ml_image_npz(p, "spinodal", a, b, seed=s),
        ),
        "pd4ml-2021",
    ),
    "eos": Synthetic(
        EOS,
        _one(
            "3_EOSL_or_EOSQ_180k.npz",
            lambda p, a, b, s: write_pd4ml_image_npz(p, "eos", a, b, seed=s),
        ),
        "pd4ml-2021",
        params={"form": "nodes"},
    ),
    "airshower": Synthetic(
        Airshower,
        _one(
            "4_airshower_100k_regression.npz",
            lambda p, a, b, s: write_airshower_npz(p, a, b, seed=s),
        ),
        "pd4ml-2021",
    ),
    "calice_ahcal": Synthetic(
        CaliceAHCAL, _one("ahcal_pions_sps2018.npz", _ahcal), "sps-2018-numpy"
    ),
    "higgsml": Synthetic(
        HiggsML,
        _one("atlas-higgs-challenge-2014-v2.csv.gz", _higgsml),
        kind="cernopendata",
        graph=False,
        heldout=("public_test", "private_test"),
    ),
    "ild_photon_showers": Synthetic(ILDPhotonShowers, _one("photons.hdf5", _photons), graph=False),
}


@dataclass(frozen=True)
class ServedFiles:
    """Synthetic files of one dataset published as a record of a running archive server.

    Picklable: a worker process rebuilds the dataset class with :meth:`dataset` and downloads
    the files from ``base_url`` like from a real archive (the server must still be running
    and reachable from the worker: it listens on 127.0.0.1 only).
    """

    name: str
    base_url: str
    record: int
    files: Mapping[str, str]

    def dataset(self) -> type[Dataset]:
        """The unregistered copy of the dataset class whose only version is these files."""
        spec = SYNTHETIC[self.name]
        return synthetic_variant(
            spec.dataset,
            self.base_url,
            self.record,
            {key: Path(path) for key, path in self.files.items()},
            template_version=spec.template_version,
            kind=spec.kind,
        )


def serve_synthetic(
    server: ArchiveServer,
    name: str,
    directory: Path,
    n_train: int,
    n_test: int,
    *,
    record: int,
    seed: int = 0,
) -> ServedFiles:
    """Write ``name``'s synthetic files into ``directory`` (unless the same files are there
    already) and publish them as ``record`` on ``server``.

    The files are a deterministic function of (``n_train``, ``n_test``, ``seed``), so a
    directory kept between runs gives the same checksums and the cache reuses its
    conversions.
    """
    spec = SYNTHETIC[name]
    target = Path(directory) / f"{name}-{n_train}-{n_test}-seed{seed}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if not (target / COMPLETE).is_file():
            staging = target.parent / f".{target.name}.writing"
            for leftover in (staging, target):
                shutil.rmtree(leftover, ignore_errors=True)
            written = spec.write(staging, n_train, n_test, seed)
            (staging / COMPLETE).write_text(json.dumps(sorted(written)))
            staging.replace(target)
        keys = json.loads((target / COMPLETE).read_text())
    files = {key: target / key for key in keys}
    if spec.kind == "cernopendata":
        server.add_cernopendata_record(record, files, eos_directory="/eos/opendata/test")
    else:
        server.add_zenodo_record(record, files)
    return ServedFiles(name, server.url, record, {key: str(path) for key, path in files.items()})
