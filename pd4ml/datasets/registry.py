"""The registry of dataset classes: explicit, ordered, looked up by name or alias.

A class is registered by :func:`register` (the built-in datasets use it as a decorator). A
subclass of a registered dataset (``class MyTop(TopTagging): ...``) is *not* registered on its
own, and never replaces the built-in class: registering a second class under a taken name is a
:class:`~pd4ml.errors.RegistrationError` unless ``replace=True`` is said explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pd4ml.errors import RegistrationError, UnknownNameError
from pd4ml.naming import closest_hint, normalise_name

if TYPE_CHECKING:
    from pd4ml.datasets.base import Dataset
    from pd4ml.datasets.results import LoadResult

_REGISTRY: dict[str, type[Dataset]] = {}
_D = TypeVar("_D", bound="type[Dataset]")


@overload
def register(cls: _D, *, replace: bool = False) -> _D: ...
@overload
def register(cls: None = None, *, replace: bool = False) -> Callable[[_D], _D]: ...
def register(cls: Any = None, *, replace: bool = False) -> Any:
    """Register a dataset class under its own ``name`` (usable as ``@register``).

    The class must set ``name`` in its own body (an inherited name is refused, so a subclass
    cannot take over its parent's entry by accident). A name already registered by another
    class is an error unless ``replace=True``.
    """

    def decorate(target: type[Dataset]) -> type[Dataset]:
        if "name" not in vars(target):
            raise RegistrationError(
                f"{target.__qualname__} must set its own class attribute 'name' to be "
                "registered (an inherited name would take over the parent's entry)"
            )
        name = str(vars(target)["name"])
        existing = _REGISTRY.get(name)
        same = existing is not None and (
            existing.__module__,
            existing.__qualname__,
        ) == (target.__module__, target.__qualname__)
        if existing is not None and not same and not replace:
            raise RegistrationError(
                f"dataset name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; choose another name, or "
                "register(cls, replace=True) to replace it on purpose"
            )
        _REGISTRY[name] = target
        return target

    if cls is None:
        return decorate
    return decorate(cls)


def unregister(cls: type[Dataset]) -> None:
    """Remove a dataset class from the registry (tests, plugins)."""
    if _REGISTRY.get(cls.name) is cls:
        with contextlib.suppress(KeyError):
            del _REGISTRY[cls.name]


def datasets() -> list[type[Dataset]]:
    """All registered dataset classes, in the manifests' order (then registration order)."""
    registered = list(_REGISTRY.values())
    return sorted(registered, key=lambda cls: (cls.manifest().order, registered.index(cls)))


def get(name: str) -> type[Dataset]:
    """The dataset class for a name or alias (case, dashes and underscores ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"a dataset name must be a string, not {type(name).__name__}")
    labels: dict[str, type[Dataset]] = {}
    for cls in _REGISTRY.values():
        manifest = cls.manifest()
        for label in (cls.name, cls.__name__, manifest.display_name, *manifest.aliases):
            labels.setdefault(label, cls)
    wanted = normalise_name(name)
    for label, cls in labels.items():
        if normalise_name(label) == wanted:
            return cls
    names = [cls.name for cls in _REGISTRY.values()]
    raise UnknownNameError(
        f"unknown dataset {name!r}{closest_hint(name, list(labels))}; "
        f"datasets: {', '.join(names) or 'none registered'}"
    )


def load(name: str, split: str = "train", **kwargs: Any) -> LoadResult:
    """``pd4ml.load("top_tagging", "train")`` — :meth:`Dataset.load` by dataset name."""
    return get(name).load(split, **kwargs)
