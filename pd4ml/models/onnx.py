"""ONNX export of a model's or an ensemble's predictions.

:func:`export_onnx` writes ``.predict`` — probabilities (classification) or values
(regression), the ensemble's weighted mean for an :class:`~pd4ml.models.Ensemble` — as one ONNX
file whose inputs are named as :attr:`Model.inputs` (``features``, ``mask``,
``jet_multiplicity``, ...) with a dynamic batch axis, and whose output is ``prediction``
``(batch,)`` or ``(batch, n_classes)``. Shared arrays (grid tables) are buffers of the model and
become constants of the graph. Inputs have the dtypes the torch adapter serves: the
description's dtype, and int64 for node indices (``neighbours``, ``edges``).

Two exporters (``exporter=``): torch's TorchScript-based one (``dynamo=False``, the default
here: it exports the shared models in well under a second) and the ``torch.export``-based one
(``dynamo=True``, torch's default since 2.9, which deprecates the TorchScript exporter; it gives
the same results but takes 10-30 s per model on a busy 2-core machine). :class:`FCN`,
:class:`DNN` (with or without embeddings, batch norm, dropout) and ensembles of them export and
are tested against onnxruntime with both (:func:`check_onnx`: max abs difference below 1e-5).
Other architectures export when the exporter can trace their ``predict``.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pd4ml.errors import Pd4mlError
from pd4ml.models.base import Model, model_inputs
from pd4ml.models.ensemble import Ensemble

#: Node-index inputs, served as int64 by the adapters (stored compact).
INDEX_INPUTS = frozenset({"neighbours", "edges"})
OUTPUT_NAME = "prediction"
Exporter = Literal["torchscript", "dynamo"]


class OnnxExportError(Pd4mlError, RuntimeError):
    """A model could not be exported to ONNX, or the exported file cannot be run."""


class OnnxInputError(Pd4mlError, KeyError):
    """A batch given to :func:`check_onnx` lacks an input of the model."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Predictions(nn.Module):
    """``forward`` = the wrapped model's ``predict`` (what the ONNX graph computes)."""

    def __init__(self, model: Model | Ensemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.model.predict(*arrays)
        return result


def input_dtype(model: Model | Ensemble, name: str) -> torch.dtype:
    """The dtype of input ``name`` in the export: int64 for node indices, else the
    description's dtype."""
    if name in INDEX_INPUTS:
        return torch.int64
    spec = model.description.arrays[name]
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(spec.dtype))).dtype


def example_inputs(model: Model | Ensemble, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero-filled input tensors ``(batch_size, *shape)`` for ``model.inputs``, as exported."""
    return tuple(
        torch.zeros(
            (batch_size, *model.description.arrays[name].shape), dtype=input_dtype(model, name)
        )
        for name in model_inputs(model)
    )


def export_onnx(
    model: Model | Ensemble,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 2,
    opset: int = 18,
    exporter: Exporter = "torchscript",
) -> Path:
    """Export ``model.predict`` to the ONNX file ``path`` (written atomically).

    Args:
        model: a :class:`Model` or :class:`Ensemble` (exported in evaluation mode; its mode is
            restored afterwards).
        path: the ``.onnx`` file to write (one file, weights included).
        batch_size: batch size of the example inputs used to trace the model, >= 2 (the batch
            axis of the file is dynamic whatever this is).
        opset: ONNX opset version (>= 18 for the ``"dynamo"`` exporter).
        exporter: ``"torchscript"`` (torch's TorchScript-based exporter, ``dynamo=False``:
            under a second for the shared models) or ``"dynamo"`` (the ``torch.export``-based
            exporter, torch's default since 2.9: the same graph, 10-30 times slower to export
            here). Use ``"dynamo"`` on a torch that no longer has the TorchScript exporter.

    Returns:
        The path written.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a batch of 1 fixes the axis), not {batch_size}")
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', not {exporter!r}")
    names = list(model_inputs(model))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".onnx", dir=target.parent
    )
    os.close(descriptor)
    was_training = model.training
    wrapper = _Predictions(model).eval()
    arguments = example_inputs(model, batch_size)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the choice of exporter is explicit (see ``exporter``): no deprecation notices
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed")
            shapes: dict[str, Any] = (
                {
                    "dynamo": True,
                    # one entry: forward takes *arrays
                    "dynamic_shapes": (tuple({0: torch.export.Dim("batch")} for _ in names),),
                    "external_data": False,
                    "verbose": False,
                }
                if exporter == "dynamo"
                else {
                    "dynamo": False,
                    "dynamic_axes": {name: {0: "batch"} for name in [*names, OUTPUT_NAME]},
                }
            )
            torch.onnx.export(
                wrapper,
                arguments,
                temporary,
                input_names=names,
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                **shapes,
            )
        os.replace(temporary, target)
    except Exception as error:
        label = getattr(model, "architecture", type(model).__name__)
        hint = " (try exporter='dynamo')" if exporter == "torchscript" else ""
        raise OnnxExportError(
            f"cannot export {label} to {target} with the {exporter} exporter{hint}: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        quiet.setLevel(level)
        model.train(was_training)
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _numpy(value: Any, dtype: torch.dtype) -> np.ndarray:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return tensor.detach().to("cpu", dtype).numpy()


def check_onnx(
    model: Model | Ensemble,
    path: str | os.PathLike[str],
    batch: Mapping[str, Any],
) -> float:
    """Run the exported file with onnxruntime on ``batch`` and compare with PyTorch.

    Args:
        model: the model that was exported.
        path: its ONNX file (:func:`export_onnx`).
        batch: arrays or tensors by name (a batch of the torch adapter; extra keys such as
            ``labels`` are ignored), cast to the exported dtypes.

    Returns:
        The maximum absolute difference between onnxruntime's and ``model.predict``'s output.
    """
    onnxruntime = importlib.import_module("onnxruntime")  # optional: the onnx extra

    names = model_inputs(model)
    missing = [name for name in names if name not in batch]
    if missing:
        raise OnnxInputError(
            f"the batch lacks the model input(s) {', '.join(missing)}; it has "
            f"{', '.join(sorted(batch))}"
        )
    feed = {name: _numpy(batch[name], input_dtype(model, name)) for name in names}
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (output,) = session.run([OUTPUT_NAME], feed)
    except Exception as error:
        raise OnnxExportError(f"onnxruntime cannot run {path}: {error}") from error
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model.predict(*(torch.from_numpy(feed[name]) for name in names))
    finally:
        model.train(was_training)
    reference = expected.numpy()
    if np.shape(output) != reference.shape:
        raise OnnxExportError(f"{path} gives shape {np.shape(output)}, PyTorch {reference.shape}")
    return float(np.max(np.abs(np.asarray(output, dtype=np.float64) - reference)))
