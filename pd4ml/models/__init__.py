"""Models that run on every dataset, built from a :class:`DataDescription`.

``pd4ml.models.build("fcn", prepared)`` builds any registered architecture; :func:`save` and
:func:`load` write and read a model or ensemble as safetensors + JSON (never pickles);
:func:`export_onnx` writes its predictions as an ONNX file.
"""

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
from pd4ml.models.dnn import DNN, LUMIN_HIGGSML, DNNConfig
from pd4ml.models.ensemble import Ensemble
from pd4ml.models.fcn import FCN, FCNConfig
from pd4ml.models.graphnet import GraphNet, GraphNetConfig
from pd4ml.models.onnx import OnnxExportError, OnnxInputError, check_onnx, export_onnx
from pd4ml.models.registry import build, load_architectures
from pd4ml.models.saved import (
    CorruptSavedModelError,
    SavedModelError,
    SavedModelFormatError,
    SavedModelInfo,
    SavedModelNotFoundError,
    WeightsMismatchError,
    load,
    save,
    saved_model_info,
)

__all__ = [
    "DNN",
    "FCN",
    "LUMIN_HIGGSML",
    "ArraySpec",
    "CorruptSavedModelError",
    "DNNConfig",
    "DataDescription",
    "DescriptionError",
    "Ensemble",
    "FCNConfig",
    "GraphNet",
    "GraphNetConfig",
    "Model",
    "ModelConfig",
    "ModelConfigError",
    "OnnxExportError",
    "OnnxInputError",
    "SavedModelError",
    "SavedModelFormatError",
    "SavedModelInfo",
    "SavedModelNotFoundError",
    "UnknownArchitectureError",
    "WeightsMismatchError",
    "architecture",
    "architectures",
    "build",
    "check_onnx",
    "describe",
    "describe_arrays",
    "export_onnx",
    "load",
    "load_architectures",
    "register_architecture",
    "save",
    "saved_model_info",
    "to_prediction",
]
