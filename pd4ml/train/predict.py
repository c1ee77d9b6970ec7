"""Streaming inference: predictions of a model or ensemble for a whole split, a batch at a time.

``predict(model, data)`` reads ``batch_size`` events, runs the model in evaluation mode without
gradients and stores the batch's predictions, so memory stays bounded by the batch whatever the
split's size; with ``output=path`` the predictions go to a memory-mapped ``.npy`` file written
batch by batch and appear atomically (the returned array is a read-only memory map of it).

Test-time augmentation (``tta=k``): the prediction of each event is the mean of the
predictions of ``augmentation.variants(batch, k)``, ``k`` deterministic transformed copies of
the batch whose first is the identity (the dataset's ``augmentation(prepared)``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

from pd4ml.adapters.common import INDEX_ARRAYS, EventArrays
from pd4ml.datasets.results import PreparedData
from pd4ml.errors import Pd4mlError
from pd4ml.models.base import model_inputs
from pd4ml.npyio import allocate_npy, release_rows


class PredictError(Pd4mlError, ValueError):
    """Invalid arguments of :func:`predict` (the message names the argument)."""


class TestTimeAugmentation(Protocol):
    """What :func:`predict` needs of an augmentation (pd4ml.datasets.augment's protocol)."""

    def variants(self, batch: Mapping[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
        """``n`` deterministic transformed copies of ``batch``, the first the identity."""
        ...


Reader = Callable[[int, int], dict[str, np.ndarray]]


def predict(
    model: torch.nn.Module,
    data: PreparedData | Mapping[str, np.ndarray],
    *,
    tta: int = 0,
    augmentation: TestTimeAugmentation | None = None,
    batch_size: int = 4096,
    output: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predictions of ``model`` for every event of ``data``.

    Args:
        model: a pd4ml ``Model`` or ``Ensemble`` (anything with an ``inputs`` tuple and
            ``predict(*tensors)``). It runs in evaluation mode (restored afterwards) under
            ``torch.no_grad``, moved to ``device`` for the call and back.
        data: a prepared split (read with :class:`~pd4ml.adapters.common.EventArrays`, one batch
            at a time) or a mapping of per-event arrays (NumPy arrays or memory maps) holding
            at least the model's inputs. Floating inputs in float64 are given to the model as
            float32, node-index arrays (``neighbours``, ``edges``) as int64.
        tta: the number of test-time copies to average (0: none; > 0 needs ``augmentation``).
            The augmentation sees every per-event array of the batch, not only the inputs.
        augmentation: the dataset's augmentation (its ``variants(batch, n)`` gives the copies).
        batch_size: events per batch (bounds the memory: about ``batch_size × (1 + tta)``
            events' inputs at a time).
        output: a path: the predictions are written there as ``.npy`` (via a temporary file in
            the same directory, renamed when complete) and returned as a read-only memory map.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"auto"``: CUDA when available).

    Returns:
        float32 ``(n_events,)`` (probabilities of binary classification, or values of a
        regression) or ``(n_events, n_classes)`` (class probabilities), in the event order of
        ``data``.
    """
    inputs = model_inputs(model)
    if not callable(getattr(model, "predict", None)):
        raise PredictError(f"model: {type(model).__name__} has no predict(*tensors) method")
    _check_arguments(tta, augmentation, batch_size)
    n_events, read, release = _reader(data, inputs, all_arrays=tta > 0)
    target = _torch_device(device)
    output_path = None if output is None else Path(output)
    if output_path is not None and not output_path.parent.is_dir():
        raise PredictError(f"output: the directory {output_path.parent} does not exist")
    temporary = (
        None
        if output_path is None
        else output_path.with_name(f".{output_path.name}.{os.getpid()}.partial")
    )
    result: np.ndarray | None = None
    was_training = model.training
    original_device = _module_device(model)
    try:
        model.to(target)
        model.eval()
        with torch.no_grad():
            for start in range(0, n_events, batch_size):
                stop = min(start + batch_size, n_events)
                batch = read(start, stop)
                predictions = _predict_batch(model, inputs, batch, tta, augmentation, target)
                if predictions.shape[:1] != (stop - start,):
                    raise PredictError(
                        f"model: {type(model).__name__}.predict returned shape "
                        f"{tuple(predictions.shape)} for a batch of {stop - start} events"
                    )
                if result is None:
                    result = _allocate(temporary, (n_events, *predictions.shape[1:]))
                result[start:stop] = predictions
                release(start, stop)
                release_rows(result, start, stop)
        if result is None:  # no events: the shape the model's description promises
            result = _allocate(temporary, (0, *_output_shape(model)))
    except BaseException:
        if temporary is not None:
            del result
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        raise
    finally:
        model.train(was_training)
        if original_device is not None:
            model.to(original_device)
    if output_path is None or temporary is None:
        return result
    if isinstance(result, np.memmap):
        result.flush()
    del result
    os.replace(temporary, output_path)
    stored: np.ndarray = np.load(output_path, mmap_mode="r", allow_pickle=False)
    return stored


def _check_arguments(tta: int, augmentation: Any, batch_size: int) -> None:
    if isinstance(tta, bool) or not isinstance(tta, int) or tta < 0:
        raise PredictError(f"tta must be a whole number ≥ 0 (copies to average), not {tta!r}")
    if tta > 0 and augmentation is None:
        raise PredictError(
            f"tta={tta} needs an augmentation: pass augmentation=Dataset.augmentation(prepared) "
            "(or tta=0; datasets without a physical symmetry have none)"
        )
    if tta > 0 and not callable(getattr(augmentation, "variants", None)):
        raise PredictError(
            f"augmentation: {type(augmentation).__name__} has no variants(batch, n) method"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"batch_size must be a whole number ≥ 1, not {batch_size!r}")


def _reader(
    data: PreparedData | Mapping[str, np.ndarray], inputs: tuple[str, ...], all_arrays: bool
) -> tuple[int, Reader, Callable[[int, int], None]]:
    """(number of events, read(start, stop) -> batch, release(start, stop))."""
    if isinstance(data, PreparedData):
        per_event = data.per_event()
        for name in inputs:
            if name not in per_event:
                where = "is shared by all events (a model keeps it as a buffer)"
                raise PredictError(
                    f"data: the model reads {name!r}, which "
                    f"{where if name in data else 'is not in this split'}; per-event arrays: "
                    f"{per_event}"
                )
        events = EventArrays(data, names=None if all_arrays else list(inputs))
        mapped = [data[name] for name in events.names]
        return (
            events.n_events,
            lambda start, stop: events.read(slice(start, stop)),
            _releaser(mapped),
        )
    if not isinstance(data, Mapping):
        raise PredictError(
            f"data must be a PreparedData or a mapping of arrays, not {type(data).__name__}"
        )
    missing = [name for name in inputs if name not in data]
    if missing:
        raise PredictError(
            f"data has no array(s) {missing} that the model reads; it has {sorted(data)}"
        )
    lengths = {name: int(np.shape(data[name])[0]) if np.ndim(data[name]) else -1 for name in inputs}
    n_events = lengths[inputs[0]]
    if len(set(lengths.values())) != 1:
        raise PredictError(f"data: the model's inputs have different numbers of events {lengths}")
    names = list(inputs)
    if all_arrays:
        names += [
            name
            for name, array in data.items()
            if name not in names and np.ndim(array) and np.shape(array)[0] == n_events
        ]
    arrays = {name: data[name] for name in names}

    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        batch = {name: np.array(array[start:stop]) for name, array in arrays.items()}
        for name in INDEX_ARRAYS.intersection(batch):
            batch[name] = batch[name].astype(np.int64)
        return batch

    return n_events, read, _releaser(list(arrays.values()))


def _releaser(arrays: list[np.ndarray]) -> Callable[[int, int], None]:
    """Drop the rows just read from this process's resident memory (memory maps only), so a
    pass over a split larger than memory keeps its resident set at about one batch."""

    def release(start: int, stop: int) -> None:
        for array in arrays:
            release_rows(array, start, stop)

    return release


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return torch.from_numpy(array).to(device)


def _predict_batch(
    model: torch.nn.Module,
    inputs: tuple[str, ...],
    batch: dict[str, np.ndarray],
    tta: int,
    augmentation: TestTimeAugmentation | None,
    device: torch.device,
) -> np.ndarray:
    """The (TTA-averaged) predictions of one batch, float32 on the CPU."""
    if tta > 0 and augmentation is not None:
        copies = augmentation.variants(batch, tta)
        if len(copies) != tta:
            raise PredictError(
                f"augmentation: {type(augmentation).__name__}.variants(batch, {tta}) returned "
                f"{len(copies)} copies, not {tta}"
            )
    else:
        copies = [batch]
    predict_batch = cast(Callable[..., torch.Tensor], model.predict)
    total: torch.Tensor | None = None
    for copy in copies:
        predictions = predict_batch(*(_tensor(copy[name], device) for name in inputs))
        predictions = predictions.to(torch.float32)
        total = predictions if total is None else total + predictions
    assert total is not None
    mean = total / len(copies) if len(copies) > 1 else total
    values: np.ndarray = mean.cpu().numpy()
    return values


def _allocate(path: Path | None, shape: tuple[int, ...]) -> np.ndarray:
    if path is None:
        return np.empty(shape, dtype=np.float32)
    return allocate_npy(path, shape, np.float32)


def _output_shape(model: torch.nn.Module) -> tuple[int, ...]:
    """Per-event prediction shape from the model's description: () or (n_classes,)."""
    description = getattr(model, "description", None)
    n_outputs = getattr(description, "n_outputs", 1)
    task = getattr(description, "task", "classification")
    return () if task == "regression" or n_outputs == 1 else (int(n_outputs),)


def _module_device(model: torch.nn.Module) -> torch.device | None:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def _torch_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise PredictError(
            f"device must be 'cpu', 'cuda', 'auto' or a torch.device, not {device!r}"
        ) from error
