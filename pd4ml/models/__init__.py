"""Models that run on every dataset, built from a :class:`DataDescription`."""

from pd4ml.models.base import (
    Model,
    ModelConfig,
    ModelConfigError,
    UnknownArchitectureError,
    architecture,
    architectures,
    register_architecture,
    to_prediction,
)
from pd4ml.models.description import (
    ArraySpec,
    DataDescription,
    DescriptionError,
    describe,
    describe_arrays,
)

__all__ = [
    "ArraySpec",
    "DataDescription",
    "DescriptionError",
    "Model",
    "ModelConfig",
    "ModelConfigError",
    "UnknownArchitectureError",
    "architecture",
    "architectures",
    "describe",
    "describe_arrays",
    "register_architecture",
    "to_prediction",
]
