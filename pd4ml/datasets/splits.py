"""Seeded validation splits for datasets whose archive has no official one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.datasets.base import ArrayWriter

VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 20210630


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool mask of a seeded, per-class random ``fraction`` of the events."""
    generator = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        chosen = generator.choice(members, size=round(fraction * len(members)), replace=False)
        held[chosen] = True
    return held


def split_off_validation(
    path: Path,
    writer: ArrayWriter,
    arrays: Mapping[str, Path],
    labels: np.ndarray,
    stratify: bool,
    info: Mapping[str, Any],
    features: list[str],
) -> None:
    """Write ``train`` and ``val`` from the training arrays (``name → .npy path``) of a file.

    ``val`` is a seeded 10 % (per class when ``stratify``); arrays that are not per event
    (e.g. a detector geometry) are copied to both splits unchanged.
    """
    held = (
        stratified_holdout(labels, VALIDATION_FRACTION, VALIDATION_SEED)
        if stratify
        else np.random.default_rng(VALIDATION_SEED).random(len(labels)) < VALIDATION_FRACTION
    )
    for split, rows in (("train", np.flatnonzero(~held)), ("val", np.flatnonzero(held))):
        for name, source in arrays.items():
            array = np.load(source, mmap_mode="r")
            if array.shape[:1] == labels.shape:
                writer.save(split, name, np.asarray(array[rows]))
            else:
                writer.save(split, name, np.asarray(array), per_event=False)
        writer.save(split, "labels", labels[rows])
        writer.describe(
            split,
            features=features,
            labels="labels",
            info={
                **info,
                "validation_fraction": VALIDATION_FRACTION,
                "validation_seed": VALIDATION_SEED,
                "source_file": path.name,
            },
        )
