"""Airshower — cosmic-ray air showers on a 9 × 9 ground array; regression of Xmax.

``load(split)`` gives ``X = [signal, time, station_positions]`` as the original pd4ml:
``signal`` ``(n_events, 9, 9, 80)`` float32 traces (80 time bins per station), ``time``
``(n_events, 9, 9, 1)`` float32 arrival time of the first particles — both -1 where a station
or bin saw nothing — and ``station_positions`` ``(81, 3)`` (x, y, z; the same for every event);
``y`` ``(n_events,)`` float32 is the depth of the shower maximum Xmax in g/cm². Splits:
``train`` and ``val`` (the file's training events with a seeded random 10 % held out) and
``test``.

``load_data(split, graph=False, standardise_target=True)``:

* ``features`` ``(n_events, 81, 81)`` float32 — per station (row-major 9 × 9) the 80 trace bins
  as log10(S + 1) (missing → 0) followed by the arrival time, centred on the event's mean over
  triggered stations and divided by the standard deviation of those centred times **on the
  train split** (fitted once and stored; the original used the std of whichever split was
  loaded);
* ``station_mask`` ``(n_events, 81)`` bool — stations with a signal;
* ``station_positions`` ``(81, 3)``;
* ``labels`` — Xmax, standardised with the train mean and std when ``standardise_target``
  (:meth:`Airshower.xmax_from_labels` inverts it exactly, so metrics are in g/cm²);
* with ``graph=True``: ``grid_neighbours`` / ``grid_mask`` ``(81, 8)``, the 8-connected station
  grid shared by all events.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult, PreparedData
from pd4ml.datasets.scaling import target_moments
from pd4ml.datasets.splits import copy_array, split_off_validation
from pd4ml.errors import ConversionError
from pd4ml.graphs import grid_neighbours
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import copy_npz_member, npz_headers

GRID = (9, 9)
N_BINS = 80
N_STATIONS = GRID[0] * GRID[1]
_CHUNK = 1_024  # events per chunk (~50 MB of float64 traces)


def centred_times(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(centred, triggered)``: times ``(n, 81)`` minus each event's mean over triggered stations
    (NaN where a station has no signal), and the ``(n, 81)`` triggered mask."""
    times = np.asarray(time, dtype=np.float64).reshape(len(time), N_STATIONS)
    triggered = times != -1
    values = np.where(triggered, times, np.nan)
    with np.errstate(invalid="ignore"):
        counts = triggered.sum(axis=1, keepdims=True)
        mean = np.where(
            counts > 0, np.nansum(values, axis=1, keepdims=True) / np.maximum(counts, 1), 0.0
        )
    return values - mean, triggered


class Airshower(Dataset):
    """Air-shower Xmax regression (see the module docstring for shapes and units)."""

    name = "airshower"
    symmetries: ClassVar[str] = (
        "None: turning or mirroring the square array would permute the stations consistently "
        "(the grid, the centred times and Xmax are invariant), but shower physics singles out "
        "directions (the geomagnetic field deflects charged shower particles azimuthally) and "
        "the files record neither the field nor the arrival-direction and core distributions, "
        "so a station permutation is not shown to be an exact symmetry."
    )
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "c1b2a67411bd6922"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "185c67e2086f7c45+cdb64cd0712427c6+9acbb37f5d604ab6"
    }
    node_positions = ("station_positions", 0, 3)
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"standardise_target": True}

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        headers = npz_headers(path)
        for part in ("train", "test"):
            expected = {
                f"X_{part}_0": (*GRID, N_BINS),
                f"X_{part}_1": (*GRID, 1),
            }
            for key, tail in expected.items():
                if key not in headers or headers[key].shape[1:] != tail:
                    found = headers[key].shape if key in headers else "missing"
                    raise ConversionError(
                        f"{path}: {key} is {found}; expected (N, {', '.join(map(str, tail))})"
                    )
            n = headers[f"X_{part}_0"].shape[0]
            if (
                headers[f"X_{part}_1"].shape[0] != n
                or headers.get(f"y_{part}") is None
                or headers[f"y_{part}"].shape != (n,)
            ):
                raise ConversionError(
                    f"{path}: the {part} arrays do not have the same number of events"
                )
            if f"X_{part}_2" not in headers or headers[f"X_{part}_2"].shape != (N_STATIONS, 3):
                raise ConversionError(
                    f"{path}: X_{part}_2 (station positions) must have shape (81, 3)"
                )
        scratch = writer.directory / ".scratch"
        scratch.mkdir(exist_ok=True)
        info = {"units": {"y": "g/cm^2 (Xmax)"}, "missing": -1}
        for part in ("train", "test"):
            sources = {
                "signal": scratch / f"{part}_signal.npy",
                "time": scratch / f"{part}_time.npy",
                "station_positions": scratch / f"{part}_positions.npy",
            }
            for index, name in enumerate(("signal", "time", "station_positions")):
                copy_npz_member(path, f"X_{part}_{index}", sources[name])
            xmax = np.asarray(
                copy_npz_member(path, f"y_{part}", scratch / f"{part}_y.npy"), dtype=np.float32
            )
            if not np.isfinite(xmax).all():
                raise ConversionError(f"{path}: y_{part} (Xmax) contains NaN or infinite values")
            features = ["signal", "time", "station_positions"]
            if part == "train":
                split_off_validation(
                    path, writer, sources, xmax, False, info, features, {"station_positions"}
                )
            else:
                for name, source in sources.items():
                    stored = np.load(source, mmap_mode="r", allow_pickle=False)
                    output = writer.empty(
                        "test",
                        name,
                        stored.shape,
                        np.float32,
                        per_event=name != "station_positions",
                    )
                    copy_array(stored, output)
                    output.flush()
                    del stored, output
                writer.save("test", "labels", xmax)
                writer.describe("test", features=features, labels="labels", info=info)
        for item in scratch.iterdir():
            item.unlink()
        scratch.rmdir()

    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        time = train["time"]
        squares = 0.0
        count = 0
        for start in range(0, len(time), _CHUNK):
            centred, triggered = centred_times(time[start : start + _CHUNK])
            squares += float(np.nansum(centred**2))
            count += int(triggered.sum())
        xmax_mean, xmax_scale = target_moments(train.y)
        return {
            "time_scale": np.array(np.sqrt(squares / max(count, 1)) or 1.0),
            "xmax_mean": xmax_mean,
            "xmax_scale": xmax_scale,
        }

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        signal, time = raw["signal"], raw["time"]
        n = len(signal)
        features = writer.empty(split, "features", (n, N_STATIONS, N_BINS + 1), np.float32)
        station_mask = writer.empty(split, "station_mask", (n, N_STATIONS), np.bool_)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            traces = np.asarray(signal[start:stop], dtype=np.float64).reshape(
                stop - start, N_STATIONS, N_BINS
            )
            traces = np.where(traces == -1, 0.0, np.clip(traces, 0.0, None))
            centred, triggered = centred_times(time[start:stop])
            features[start:stop, :, :N_BINS] = np.log10(traces + 1.0)
            features[start:stop, :, N_BINS] = np.where(
                triggered, centred / float(statistics["time_scale"]), 0.0
            )
            station_mask[start:stop] = triggered
        features.flush()
        xmax = np.asarray(raw.y, dtype=np.float64)
        if params["standardise_target"]:
            xmax = (xmax - float(statistics["xmax_mean"])) / float(statistics["xmax_scale"])
        writer.save(split, "labels", xmax.astype(np.float32))
        writer.save(
            split,
            "station_positions",
            np.asarray(raw["station_positions"], dtype=np.float32),
            per_event=False,
        )
        names = ["features", "station_mask", "station_positions", "labels"]
        if params["graph"]:
            neighbours, valid = grid_neighbours(*GRID, 8)
            writer.save(split, "grid_neighbours", neighbours, per_event=False)
            writer.save(split, "grid_mask", valid, per_event=False)
            names += ["grid_neighbours", "grid_mask"]
        writer.describe_arrays(
            split,
            names,
            {
                "time_scale": float(statistics["time_scale"]),
                "xmax_mean": float(statistics["xmax_mean"]),
                "xmax_scale": float(statistics["xmax_scale"]),
                "target_standardised": bool(params["standardise_target"]),
            },
        )

    @staticmethod
    def xmax_from_labels(values: np.ndarray, prepared: PreparedData) -> np.ndarray:
        """Xmax in g/cm² from (predicted) prepared labels — the exact inverse of the scaling."""
        info = prepared.metadata["info"]
        values = np.asarray(values, dtype=np.float64)
        if not info["target_standardised"]:
            return values
        physical: np.ndarray = values * info["xmax_scale"] + info["xmax_mean"]
        return physical
