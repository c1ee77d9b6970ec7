"""The interface every pd4ml model follows, and the registry of architectures.

A model is a plain :class:`torch.nn.Module` built from a :class:`DataDescription` and a typed,
frozen configuration dataclass. It names the per-event input arrays it reads
(:attr:`Model.inputs`, in the order of :meth:`Model.forward`'s arguments), so the trainer,
:func:`pd4ml.train.predict` and the ONNX export call every model the same way::

    raw = model(*(batch[name] for name in model.inputs))   # (batch,) or (batch, n_classes)

Arrays shared by all events (a grid's neighbour table) are never inputs: a model that needs one
registers it as a buffer (saved with the weights, baked into an ONNX export;
:func:`pd4ml.models.graph_inputs.register_shared`), created with the shape and dtype of its
:class:`ArraySpec` and filled from ``shared`` when given (a model rebuilt by
:func:`pd4ml.models.load` gets it back from the weights file).

``forward`` returns the raw output: a logit for binary classification ``(batch,)``, logits
``(batch, n_classes)`` for more classes, the value ``(batch,)`` for a regression, in the
targets' units: a regression model's last layer is followed by ``× target_scale +
target_location`` (buffers, saved with the weights; the trainer sets them to the training
targets' weighted mean and standard deviation, :func:`set_target_scale`).
:func:`to_prediction` turns the output into a probability or value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from pd4ml.errors import Pd4mlError
from pd4ml.models.description import DataDescription


class ModelConfigError(Pd4mlError, ValueError):
    """An architecture configuration is invalid (the message names the field)."""


class UnknownArchitectureError(Pd4mlError, KeyError):
    """No architecture of that name is registered."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the architecture configurations: frozen dataclasses, checked on construction.

    Subclasses declare typed fields with defaults and may extend :meth:`check`."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            expected = item.type if isinstance(item.type, type) else None
            if expected is None:
                expected = {"int": int, "float": float, "bool": bool, "str": str}.get(
                    str(item.type)
                )
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, item.name, float(value))
                continue
            if expected is not None and (
                not isinstance(value, expected) or (expected is int and isinstance(value, bool))
            ):
                raise ModelConfigError(
                    f"{type(self).__name__}.{item.name} must be {expected.__name__}, "
                    f"not {type(value).__name__} {value!r}"
                )
        self.check()

    def check(self) -> None:
        """Range checks of the fields (raise :class:`ModelConfigError` naming the field)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ModelConfig:
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ModelConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        converted = {
            key: tuple(item) if isinstance(item, list) else item for key, item in value.items()
        }
        return cls(**converted)


def positive(config: ModelConfig, *names: str) -> None:
    """Raise :class:`ModelConfigError` unless each named field is > 0."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ModelConfigError(
                f"{type(config).__name__}.{name} must be positive, not {getattr(config, name)!r}"
            )


def fraction(config: ModelConfig, *names: str) -> None:
    """Raise :class:`ModelConfigError` unless each named field is in [0, 1)."""
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ModelConfigError(
                f"{type(config).__name__}.{name} must be in [0, 1), not {getattr(config, name)!r}"
            )


class Model(nn.Module):
    """Base class of pd4ml models (see the module docstring for the calling convention).

    Subclasses set :attr:`architecture` and :attr:`Config`, and implement ``__init__(description,
    config)`` (call ``super().__init__(description, config)`` first) and ``forward``.
    """

    architecture: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]
    #: the input arrays read, in the order of ``forward``'s arguments (set in ``__init__``)
    inputs: tuple[str, ...]

    def __init__(
        self,
        description: DataDescription,
        config: ModelConfig,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ModelConfigError(
                f"{type(self).__name__} takes a {self.Config.__name__}, not {type(config).__name__}"
            )
        self.description = description
        self.config = config
        self.inputs = ("features",)
        if description.task == "regression":
            # outputs in the targets' units: raw × scale + location, set from the training
            # targets by the trainer (Recipe.scale_targets), so the network itself learns
            # numbers of order one whatever the units (GeV, degrees)
            self.register_buffer("target_location", torch.zeros(()))
            self.register_buffer("target_scale", torch.ones(()))
            self.register_forward_hook(_in_target_units)

    @classmethod
    def build(
        cls: type[_M],
        description: DataDescription,
        config: ModelConfig | None = None,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> _M:
        """The model for data described by ``description`` (default configuration if None),
        with the arrays ``shared`` by all events (grid tables) where the model uses them."""
        return cls(description, config if config is not None else cls.Config(), shared)

    def predict(self, *arrays: torch.Tensor) -> torch.Tensor:
        """Probabilities (classification) or values (regression) for one batch."""
        return to_prediction(self.description, self(*arrays))

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


_M = TypeVar("_M", bound=Model)

_ARCHITECTURES: dict[str, type[Model]] = {}


def register_architecture(cls: type[_M]) -> type[_M]:
    """Add a model class to the registry under ``cls.architecture``."""
    name = cls.architecture
    if name in _ARCHITECTURES and _ARCHITECTURES[name] is not cls:
        raise ModelConfigError(f"an architecture named {name!r} is already registered")
    _ARCHITECTURES[name] = cls
    return cls


def architecture(name: str) -> type[Model]:
    """The model class registered as ``name``."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(_ARCHITECTURES)) or "none"
        raise UnknownArchitectureError(f"no model architecture {name!r}; known: {known}") from None


def architectures() -> list[str]:
    """The names of all registered architectures."""
    return sorted(_ARCHITECTURES)


def _in_target_units(
    module: nn.Module, arguments: tuple[torch.Tensor, ...], output: torch.Tensor
) -> torch.Tensor:
    scale: torch.Tensor = module.get_buffer("target_scale")
    location: torch.Tensor = module.get_buffer("target_location")
    return output * scale + location


def set_target_scale(model: Model, location: float, scale: float) -> None:
    """Make a regression model's outputs ``raw × scale + location`` (e.g. the training
    targets' mean and standard deviation)."""
    if model.description.task != "regression":
        raise ModelConfigError("only a regression model has a target scale")
    if not scale > 0:
        raise ModelConfigError(f"the target scale must be positive, not {scale!r}")
    with torch.no_grad():
        model.get_buffer("target_location").fill_(location)
        model.get_buffer("target_scale").fill_(scale)


def to_prediction(description: DataDescription, raw: torch.Tensor) -> torch.Tensor:
    """Raw model output → prediction: sigmoid (binary), softmax over the last axis (more
    classes) or unchanged (regression)."""
    if description.task == "regression":
        return raw
    if description.n_outputs == 1:
        return torch.sigmoid(raw)
    return torch.softmax(raw, dim=-1)


def _torch_dtype(dtype: str) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype


def model_inputs(model: nn.Module) -> tuple[str, ...]:
    """The input names of a pd4ml model or ensemble."""
    names = getattr(model, "inputs", None)
    if not isinstance(names, tuple):
        raise ModelConfigError(f"{type(model).__name__} does not declare its inputs")
    return names
