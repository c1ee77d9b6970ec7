"""Checkpoints of a training run: one safetensors file, never a pickle.

The file ``checkpoint.safetensors`` holds every tensor (model, best weights, SWA average,
optimizer state, torch RNG state) and, in its metadata, one JSON document with the rest
(epoch, step, history, schedule state, NumPy and Python RNG states, the recipe). It is written
to a temporary file and renamed, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pd4ml.errors import Pd4mlError

FILENAME = "checkpoint.safetensors"
FORMAT = "pd4ml-checkpoint"
_STATE_KEY = "pd4ml_state"


class CheckpointError(Pd4mlError):
    """A checkpoint that cannot be used (corrupt, another recipe, another model)."""


def save_checkpoint(
    directory: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> Path:
    """Write ``tensors`` and the JSON-able ``state`` atomically to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    temporary = directory / f".{FILENAME}.{os.getpid()}.tmp"
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    save_file(
        contiguous, str(temporary), metadata={_STATE_KEY: json.dumps({"format": FORMAT, **state})}
    )
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The tensors and state of ``directory``'s checkpoint, or None when there is none."""
    path = directory / FILENAME
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = json.loads(metadata[_STATE_KEY])
        tensors = load_file(str(path))
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable pd4ml checkpoint ({error}); delete it to start afresh"
        ) from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pd4ml checkpoint; delete it to start afresh")
    return tensors, state


def prefixed(prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": value for name, value in values.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {name[start:]: value for name, value in tensors.items() if name.startswith(prefix + ".")}


def optimizer_parts(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's state as tensors (``optimizer.<param>.<key>``) + JSON."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> None:
    values: dict[int, dict[str, Any]] = {}
    for name, tensor in unprefixed("optimizer", tensors).items():
        index, key = name.split(".", 1)
        values.setdefault(int(index), {})[key] = tensor
    for index, plain in state["plain"].items():
        values.setdefault(int(index), {}).update(plain)
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": values, "param_groups": groups})


def rng_parts() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The RNG states of torch (CPU and CUDA), NumPy's global generator and Python's."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    kind, keys, position, has_gauss, cached = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state()
    )
    python = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "python": [python[0], list(python[1]), python[2]],
    }


def load_rng(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(
        (int(name.rsplit(".", 1)[1]), value)
        for name, value in tensors.items()
        if name.startswith("rng.cuda.")
    )
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([value for _, value in cuda])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
