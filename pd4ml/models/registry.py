"""Build any registered architecture by name from a prepared split or a data description.

The architectures register themselves when their module is imported (``@register_architecture``
in :mod:`pd4ml.models.base`); importing :mod:`pd4ml.models` imports :mod:`~pd4ml.models.fcn`
and :mod:`~pd4ml.models.dnn`. Modules with heavier dependencies (``pd4ml.models.graphnet``) are
imported on first use by :func:`build` and :func:`pd4ml.models.load`, through
:func:`load_architectures`, so ``build("graphnet", ...)`` works without importing them first.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from pd4ml.models.base import Model, ModelConfig, architecture
from pd4ml.models.description import DataDescription, describe

if TYPE_CHECKING:
    from pd4ml.datasets.results import PreparedData

#: Modules that register architectures, imported by :func:`load_architectures` when present.
ARCHITECTURE_MODULES = ("pd4ml.models.fcn", "pd4ml.models.dnn", "pd4ml.models.graphnet")


def load_architectures() -> None:
    """Import every module of :data:`ARCHITECTURE_MODULES` that exists (each registers its
    architectures)."""
    for module in ARCHITECTURE_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def build(
    name: str,
    data: PreparedData | DataDescription,
    config: ModelConfig | None = None,
    *,
    shared: Mapping[str, np.ndarray] | None = None,
) -> Model:
    """The model of architecture ``name`` (``"fcn"``, ``"dnn"``, ``"graphnet"``) for ``data``.

    Args:
        name: a registered architecture (:func:`pd4ml.models.architectures`).
        data: a prepared split (described with :func:`pd4ml.models.describe`; its shared arrays,
            e.g. ``grid_neighbours``, are passed to the model) or a :class:`DataDescription`.
        config: the architecture's configuration dataclass (its defaults when None).
        shared: arrays shared by all events, for a description (overrides the split's).

    Raises:
        UnknownArchitectureError: no architecture of that name.
        ModelConfigError: a configuration of another architecture, or one the data cannot use.
    """
    load_architectures()
    cls = architecture(name)
    if isinstance(data, DataDescription):
        description = data
        arrays = dict(shared or {})
    else:
        description = describe(data)
        arrays = {key: np.array(data[key]) for key in sorted(data.shared)}  # writable copies
        arrays.update(shared or {})
    return cls(description, config if config is not None else cls.Config(), arrays)
