"""The original pd4ml ``.npz`` layout, shared by its five files.

Keys ``X_{split}_{i}`` (the inputs, in order) and ``y_{split}`` for ``split`` in train and test.
The arrays are streamed into ``.npy`` files chunk by chunk: a compressed multi-GB npz is never
held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pd4ml.datasets.base import ArrayWriter
from pd4ml.errors import ConversionError
from pd4ml.npyio import copy_npz_member, npz_headers

_FEATURE_KEY = re.compile(r"^X_(?P<split>[a-z]+)_(?P<index>\d+)$")


def convert_pd4ml_npz(
    path: Path,
    writer: ArrayWriter,
    feature_names: Sequence[str],
    splits: Sequence[str] = ("train", "test"),
    labels_name: str = "labels",
) -> None:
    """Stream ``X_<split>_<i>``/``y_<split>`` of an original pd4ml npz into ``writer``.

    ``feature_names`` name the inputs ``X_<split>_0, X_<split>_1, …`` in order; the file must
    hold exactly that many per split, and labels of shape ``(n_events,)``. Shapes of the inputs
    are checked by each dataset's converter (some inputs, such as a detector geometry, are not
    per event).
    """
    headers = npz_headers(path)
    for split in splits:
        label_key = f"y_{split}"
        if label_key not in headers:
            raise ConversionError(f"{path}: no array {label_key!r}; arrays: {sorted(headers)}")
        present = sorted(
            (int(match["index"]), key)
            for key in headers
            if (match := _FEATURE_KEY.match(key)) and match["split"] == split
        )
        if [index for index, _ in present] != list(range(len(feature_names))):
            raise ConversionError(
                f"{path}: expected inputs X_{split}_0..X_{split}_{len(feature_names) - 1} "
                f"({', '.join(feature_names)}), found {[key for _, key in present]}"
            )
        if len(headers[label_key].shape) != 1:
            raise ConversionError(
                f"{path}: {label_key} has shape {headers[label_key].shape}, expected (n_events,)"
            )
        for (_, key), name in zip(present, feature_names, strict=True):
            copy_npz_member(path, key, writer.path(split, name))
        copy_npz_member(path, label_key, writer.path(split, labels_name))
        writer.describe(split, features=list(feature_names), labels=labels_name)
