"""Saved models: a directory with ``safetensors`` weights and a JSON description. Never pickles.

Layout of a saved model directory::

    model.json            {"format": "pd4ml-model", "format_version": 1, "kind": "model"|"ensemble",
                           "architecture", "config", "description", "members", "ensemble_weights",
                           "recipe", "pd4ml_version", "extra", "weights_sha256"}
    weights.safetensors   the state dict (parameters and buffers, shared grid tables included);
                          for an ensemble the members' tensors prefixed "member{i}."

``description`` is :meth:`DataDescription.to_json` (task, array shapes, the dataset's name,
version and prepared-cache key), ``recipe`` the training recipe's JSON, ``extra`` any JSON the
caller adds. For an ensemble ``members`` lists each member's ``architecture``, ``config`` and
``description``; the top-level ``architecture``/``config`` are the members' when all members
share them, else null. :func:`save` writes into a temporary sibling directory and renames it
into place, so a reader sees the old model, the new one or none, never a half-written one;
:func:`load` verifies the weights file against ``weights_sha256`` and reads it with
:func:`safetensors.torch.load_file` (no ``torch.load``, no unpickling).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pd4ml._version import __version__
from pd4ml.errors import Pd4mlError
from pd4ml.models.base import (
    Model,
    ModelConfigError,
    UnknownArchitectureError,
    architecture,
)
from pd4ml.models.description import DataDescription, DescriptionError
from pd4ml.models.ensemble import Ensemble
from pd4ml.models.registry import load_architectures

FORMAT = "pd4ml-model"
FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


class SavedModelError(Pd4mlError):
    """A saved model cannot be written or read."""


class SavedModelNotFoundError(SavedModelError, FileNotFoundError):
    """The saved-model directory or one of its files does not exist."""


class CorruptSavedModelError(SavedModelError):
    """A saved-model file is truncated, damaged or does not match its recorded checksum."""


class SavedModelFormatError(SavedModelError):
    """``model.json`` is not a pd4ml saved model, is of a newer format, or is inconsistent."""


class WeightsMismatchError(SavedModelError):
    """The weights file does not fit the architecture described in ``model.json`` (missing or
    unexpected tensors, other shapes or dtypes)."""


class _HasToJson(Protocol):
    def to_json(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class SavedMember:
    """One model of a saved directory: its architecture, configuration JSON and description."""

    architecture: str
    config: Mapping[str, Any]
    description: DataDescription


@dataclass(frozen=True)
class SavedModelInfo:
    """What ``model.json`` says, without loading the weights (:func:`saved_model_info`)."""

    kind: str
    members: tuple[SavedMember, ...]
    description: DataDescription
    ensemble_weights: tuple[float, ...] | None
    recipe: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    pd4ml_version: str
    format_version: int


# -- saving --------------------------------------------------------------------------------------


def _members(model: Model | Ensemble) -> list[Model]:
    if isinstance(model, Ensemble):
        return model.models()
    if isinstance(model, Model):
        return [model]
    raise TypeError(f"save() takes a pd4ml Model or Ensemble, not {type(model).__name__}")


def _as_json(value: Mapping[str, Any] | _HasToJson | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    to_json = getattr(value, "to_json", None)
    if not callable(to_json):
        raise TypeError(f"save(): {what} must be a mapping or have to_json(), not {value!r}")
    return dict(to_json())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable")


def _tensors(members: Sequence[Model], ensemble: bool) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for index, member in enumerate(members):
        prefix = f"member{index}." if ensemble else ""
        for name, tensor in member.state_dict().items():
            # copies: safetensors refuses tensors that share memory (tied or numpy-backed)
            tensors[prefix + name] = tensor.detach().to("cpu").contiguous().clone()
    return tensors


def _payload(
    model: Model | Ensemble,
    members: Sequence[Model],
    recipe: dict[str, Any] | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    ensemble = isinstance(model, Ensemble)
    entries = [
        {
            "architecture": member.architecture,
            "config": member.config.to_json(),
            "description": member.description.to_json(),
        }
        for member in members
    ]
    same_architecture = len({entry["architecture"] for entry in entries}) == 1
    same_config = same_architecture and all(e["config"] == entries[0]["config"] for e in entries)
    weights = model.weights.tolist() if isinstance(model, Ensemble) else None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "ensemble" if ensemble else "model",
        "architecture": entries[0]["architecture"] if same_architecture else None,
        "config": entries[0]["config"] if same_config else None,
        "description": (model.description if ensemble else members[0].description).to_json(),
        "members": entries if ensemble else None,
        "ensemble_weights": weights,
        "recipe": recipe,
        "pd4ml_version": __version__,
        "extra": extra,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_target(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise SavedModelError(f"{directory} exists and is not a directory; choose another path")
    if directory.is_dir():
        others = sorted(
            p.name for p in directory.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE)
        )
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise SavedModelError(
                f"{directory} holds other files ({shown}); save the model into a new or empty "
                "directory (an existing saved model there is replaced)"
            )


def save(
    model: Model | Ensemble,
    directory: str | os.PathLike[str],
    *,
    recipe: Mapping[str, Any] | _HasToJson | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a model or ensemble to ``directory`` (``model.json`` + ``weights.safetensors``).

    The directory is written next to its final place and renamed into it; an existing saved
    model there is replaced, a directory holding other files is refused.

    Args:
        model: a :class:`Model` or :class:`Ensemble` (any number of members).
        directory: the saved-model directory (parents are created).
        recipe: the training recipe (a JSON mapping, or an object with ``to_json()``).
        extra: more JSON to store (``model.json["extra"]``).

    Returns:
        The directory.
    """
    members = _members(model)
    target = Path(directory)
    payload = _payload(model, members, _as_json(recipe, "recipe"), _as_json(extra, "extra") or {})
    tensors = _tensors(members, isinstance(model, Ensemble))
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        import safetensors.torch

        weights = staging / WEIGHTS_FILE
        safetensors.torch.save_file(tensors, str(weights), metadata={"format": FORMAT})
        payload["weights_sha256"] = _sha256(staging / WEIGHTS_FILE)
        try:
            text = json.dumps(payload, indent=2, allow_nan=False, default=_json_default)
        except (TypeError, ValueError) as error:
            raise SavedModelError(
                f"cannot save to {target}: the recipe, extra or config is not JSON ({error})"
            ) from error
        (staging / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            _fsync(staging / name)
        staging.chmod(0o755)
        _replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and
    removed after."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- loading -------------------------------------------------------------------------------------


def _read_json(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise SavedModelNotFoundError(
            f"no saved model at {directory}: the directory does not exist (save one with "
            "pd4ml.models.save(model, directory))"
        )
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise SavedModelNotFoundError(
            f"{path} is missing: {directory} is not a saved pd4ml model (or it is incomplete); "
            "save the model again"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptSavedModelError(
            f"{path} is not valid JSON ({error}); the file is damaged, save the model again"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SavedModelFormatError(
            f"{path} is not a pd4ml saved model (format {found!r}, expected {FORMAT!r})"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SavedModelFormatError(f"{path}: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        raise SavedModelFormatError(
            f"{path} was written by a newer pd4ml (format_version {version}, pd4ml "
            f"{payload.get('pd4ml_version')}); this pd4ml {__version__} reads format_version "
            f"<= {FORMAT_VERSION}: upgrade pd4ml (pip install -U pd4ml-hep)"
        )
    if payload.get("kind") not in ("model", "ensemble"):
        raise SavedModelFormatError(
            f"{path}: kind must be 'model' or 'ensemble', not {payload.get('kind')!r}"
        )
    return payload


def _info(directory: Path, payload: Mapping[str, Any]) -> SavedModelInfo:
    path = directory / CONFIG_FILE
    try:
        description = DataDescription.from_json(payload["description"])
        if payload["kind"] == "ensemble":
            entries = payload["members"]
            if not isinstance(entries, list) or not entries:
                raise SavedModelFormatError(f"{path}: an ensemble needs a non-empty members list")
        else:
            entries = [payload]
        members = tuple(
            SavedMember(
                str(entry["architecture"]),
                dict(entry["config"]),
                DataDescription.from_json(entry["description"])
                if entry.get("description") is not None
                else description,
            )
            for entry in entries
        )
        weights = payload.get("ensemble_weights")
        if payload["kind"] == "ensemble":
            if not isinstance(weights, list) or len(weights) != len(members):
                raise SavedModelFormatError(
                    f"{path}: ensemble_weights must list one weight per member"
                )
            weights = tuple(float(w) for w in weights)
            if not all(math.isfinite(w) and w > 0 for w in weights):
                raise SavedModelFormatError(f"{path}: ensemble_weights must be positive")
        else:
            weights = None
    except (KeyError, TypeError, ValueError, DescriptionError) as error:
        if isinstance(error, SavedModelFormatError):
            raise
        raise SavedModelFormatError(
            f"{path} is incomplete or inconsistent ({type(error).__name__}: {error}); save the "
            "model again"
        ) from error
    return SavedModelInfo(
        kind=str(payload["kind"]),
        members=members,
        description=description,
        ensemble_weights=weights,
        recipe=payload.get("recipe"),
        extra=dict(payload.get("extra") or {}),
        pd4ml_version=str(payload.get("pd4ml_version")),
        format_version=int(payload["format_version"]),
    )


def saved_model_info(directory: str | os.PathLike[str]) -> SavedModelInfo:
    """Read ``model.json`` of a saved model (architecture, configuration, description, recipe,
    extra) without loading the weights."""
    path = Path(directory)
    return _info(path, _read_json(path))


def _read_weights(directory: Path, payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise SavedModelNotFoundError(
            f"{path} is missing: the saved model in {directory} is incomplete; save it again"
        )
    expected = payload.get("weights_sha256")
    if expected is not None and _sha256(path) != expected:
        raise CorruptSavedModelError(
            f"{path} does not match the checksum recorded in {CONFIG_FILE} (truncated, damaged "
            "or replaced); save the model again"
        )
    import safetensors
    import safetensors.torch

    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CorruptSavedModelError(
            f"{path} is not a readable safetensors file ({error}); the file is truncated or "
            "damaged, save the model again"
        ) from error


def _build(directory: Path, member: SavedMember) -> Model:
    path = directory / CONFIG_FILE
    try:
        cls = architecture(member.architecture)
    except UnknownArchitectureError as error:
        raise UnknownArchitectureError(
            f"{path}: {error.args[0]}; import the module that defines it before loading"
        ) from None
    try:
        config = cls.Config.from_json(member.config)
        return cls(member.description, config)
    except (ModelConfigError, TypeError) as error:
        raise SavedModelFormatError(
            f"{path}: the {member.architecture!r} configuration cannot be built ({error})"
        ) from error


def _load_state(
    model: Model, tensors: Mapping[str, torch.Tensor], prefix: str, path: Path
) -> set[str]:
    """Load the tensors named ``prefix + name`` into ``model``; returns the names used."""
    state = {
        name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)
    }
    expected = model.state_dict()
    label = f"{path} ({prefix.rstrip('.') or model.architecture})"
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsMismatchError(
            f"{label} does not fit the architecture in {CONFIG_FILE}: missing "
            f"{', '.join(missing) or 'none'}; unexpected {', '.join(unexpected) or 'none'}"
        )
    for name, tensor in expected.items():
        found = state[name]
        if tuple(found.shape) != tuple(tensor.shape) or found.dtype != tensor.dtype:
            raise WeightsMismatchError(
                f"{label}: tensor {name!r} has shape {tuple(found.shape)} {found.dtype}, the "
                f"architecture needs {tuple(tensor.shape)} {tensor.dtype}"
            )
    model.load_state_dict(state, strict=True)
    return {prefix + name for name in state}


def load(
    directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> Model | Ensemble:
    """Rebuild a model or ensemble saved with :func:`save`, in evaluation mode, on
    ``map_location``.

    Raises:
        SavedModelNotFoundError: the directory, ``model.json`` or ``weights.safetensors`` is
            missing.
        CorruptSavedModelError: a file is truncated, damaged or fails its checksum.
        SavedModelFormatError: not a pd4ml saved model, a newer ``format_version``, or an
            inconsistent ``model.json``.
        UnknownArchitectureError: the architecture is not registered.
        WeightsMismatchError: the weights do not fit the architecture (names, shapes, dtypes).
    """
    path = Path(directory)
    payload = _read_json(path)
    info = _info(path, payload)
    load_architectures()
    members = [_build(path, member) for member in info.members]
    tensors = _read_weights(path, payload)
    ensemble = info.kind == "ensemble"
    used: set[str] = set()
    for index, member in enumerate(members):
        prefix = f"member{index}." if ensemble else ""
        used |= _load_state(member, tensors, prefix, path / WEIGHTS_FILE)
    leftover = sorted(set(tensors) - used)
    if leftover:
        shown = ", ".join(leftover[:5]) + (", ..." if len(leftover) > 5 else "")
        raise WeightsMismatchError(
            f"{path / WEIGHTS_FILE} holds tensors of no model described in {CONFIG_FILE} "
            f"({shown}); save the model again"
        )
    if ensemble:
        combined = Ensemble(members)
        assert info.ensemble_weights is not None
        with torch.no_grad():  # the saved float32 weights exactly, not renormalised
            combined.weights.copy_(torch.tensor(info.ensemble_weights, dtype=torch.float32))
        result: Model | Ensemble = combined
    else:
        result = members[0]
    return result.to(map_location).eval()
