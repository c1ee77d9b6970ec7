"""Histogram-image datasets of the original pd4ml: Spinodal (20 × 20) and EOS (24 × 24).

``load(split)`` gives ``X = [histograms]`` ``(n_events, H, W)`` float32 and ``y`` int64.
Splits: ``train`` and ``val`` (the file's training events with a seeded stratified 10 % held
out as ``val``, recorded in the metadata) and ``test``.

``load_data(split, graph=False, standardise=…, form="image")``: per-pixel standardisation with
the mean and standard deviation of the train split (fitted once, stored; the original refitted
it on every test load for EOS and did not scale Spinodal at all — both are options here), in
image form ``features`` ``(n_events, 1, H, W)`` or node form ``(n_events, H·W, 1)``
(``form="nodes"``, pixels row-major). With ``graph=True``: ``grid_neighbours`` and
``grid_mask`` ``(H·W, 8)`` — the 8-connected grid, built once and shared by all events.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.scaling import RunningMoments
from pd4ml.datasets.splits import copy_array, split_off_validation
from pd4ml.errors import ConversionError
from pd4ml.graphs import grid_neighbours
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import allocate_npy, copy_npz_member, npz_headers

_CHUNK = 4_096  # events per chunk


class HistogramDataset(Dataset, register=False):
    """Shared code of the histogram-image datasets (one input ``(N, H, W)`` per split)."""

    shape: ClassVar[tuple[int, int]]

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        headers = npz_headers(path)
        for part in ("train", "test"):
            for key in (f"X_{part}_0", f"y_{part}"):
                if key not in headers:
                    raise ConversionError(f"{path}: no array {key!r}; arrays: {sorted(headers)}")
            shape = headers[f"X_{part}_0"].shape
            label_shape = headers[f"y_{part}"].shape
            if shape[1:] != cls.shape or label_shape != shape[:1]:
                raise ConversionError(
                    f"{path}: X_{part}_0 has shape {shape} and y_{part} {label_shape}; "
                    f"expected (N, {cls.shape[0]}, {cls.shape[1]}) and (N,)"
                )
        scratch = writer.directory / ".scratch"
        scratch.mkdir(exist_ok=True)
        info = {"image_shape": list(cls.shape)}
        for part in ("train", "test"):
            images = copy_npz_member(path, f"X_{part}_0", scratch / f"{part}_images.npy")
            labels = np.rint(
                np.asarray(copy_npz_member(path, f"y_{part}", scratch / f"{part}_labels.npy"))
            ).astype(np.int64)
            if not all(
                np.isfinite(images[i : i + _CHUNK]).all() for i in range(0, len(images), _CHUNK)
            ):
                raise ConversionError(f"{path}: X_{part}_0 contains NaN or infinite values")
            if not np.isin(labels, (0, 1)).all():
                raise ConversionError(f"{path}: y_{part} holds values other than 0 and 1")
            if part == "train":
                sources = {"histograms": scratch / f"{part}_histograms.npy"}
                as_float = allocate_npy(sources["histograms"], images.shape, np.float32)
                copy_array(images, as_float)
                as_float.flush()
                del images, as_float
                split_off_validation(path, writer, sources, labels, True, info, ["histograms"])
            else:
                output = writer.empty("test", "histograms", images.shape, np.float32)
                copy_array(images, output)
                output.flush()
                del images, output
                writer.save("test", "labels", labels)
                writer.describe("test", features=["histograms"], labels="labels", info=info)
        for item in scratch.iterdir():
            item.unlink()
        scratch.rmdir()

    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        images = train.X[0]
        moments = RunningMoments(cls.shape)
        for start in range(0, len(images), _CHUNK):
            moments.update(images[start : start + _CHUNK])
        return {"mean": moments.mean, "scale": moments.scale}

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        if params["form"] not in ("image", "nodes"):
            raise ValueError(f"form must be 'image' or 'nodes', not {params['form']!r}")
        images = raw.X[0]
        height, width = cls.shape
        shape = (1, height, width) if params["form"] == "image" else (height * width, 1)
        features = writer.empty(split, "features", (len(images), *shape), np.float32)
        for start in range(0, len(images), _CHUNK):
            block = np.asarray(images[start : start + _CHUNK], dtype=np.float64)
            if params["standardise"]:
                block = (block - statistics["mean"]) / statistics["scale"]
            features[start : start + len(block)] = block.reshape(len(block), *shape)
        features.flush()
        writer.save(split, "labels", np.asarray(raw.y))
        names = ["features", "labels"]
        if params["graph"]:
            neighbours, valid = grid_neighbours(height, width, 8)
            writer.save(split, "grid_neighbours", neighbours, per_event=False)
            writer.save(split, "grid_mask", valid, per_event=False)
            names += ["grid_neighbours", "grid_mask"]
        writer.describe_arrays(
            split, names, {"image_shape": [height, width], "form": params["form"]}
        )


class Spinodal(HistogramDataset):
    """Spinodal vs Maxwell phase transition: ``(N, 20, 20)`` pion momentum histograms."""

    name = "spinodal"
    symmetries: ClassVar[str] = (
        "None offered: rotations about the beam axis and reflections are symmetries of these "
        "hydrodynamic collisions, but the file records neither which momentum components the "
        "two histogram axes are nor their bin edges, so no flip or 90° rotation of the image "
        "is known to map each pion's bin to its transformed momentum's bin."
    )
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "155b0ee9ec57b7ea"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "3509b5d7ee100773+f511163940e85ba0+d477ee8ca385ab90"
    }
    shape = (20, 20)
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"standardise": False, "form": "image"}
    prepare_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"form": ("image", "nodes")}


class EOS(HistogramDataset):
    """EOSL vs EOSQ: ``(N, 24, 24)`` pion spectra ρ(pT, φ); per-pixel standardised by default."""

    name = "eos"
    symmetries: ClassVar[str] = (
        "None offered: a rotation about the beam axis would be a cyclic shift along φ by whole "
        "bins (and φ → -φ a reflection) of ρ(pT, φ), but the file records neither which image "
        "axis is φ nor that it covers [0, 2π) in equal bins, so neither shift is known to be "
        "exact on the stored images."
    )
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "d09516ac551ee82b"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "1cb5843b9e521b26+8ad47a270b2f7314+759167e841aa89b3"
    }
    shape = (24, 24)
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"standardise": True, "form": "image"}
    prepare_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"form": ("image", "nodes")}
