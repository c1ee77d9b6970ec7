"""Framework views of prepared splits, registered from above.

The data layer imports no framework adapter. :mod:`pd4ml.adapters` registers its view
factories here when it is imported (``import pd4ml`` does that), and
:meth:`PreparedData.torch <pd4ml.datasets.results.PreparedData>`-style conveniences look them
up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pd4ml.errors import Pd4mlError

_VIEWS: dict[str, Callable[..., Any]] = {}


def register_view(name: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(prepared, **options)`` available as the view ``name``."""
    _VIEWS[name] = factory


def make_view(name: str, prepared: Any, **options: Any) -> Any:
    """The view ``name`` (``"torch"``, ``"pyg"``, ``"tf"``) of a prepared split."""
    try:
        factory = _VIEWS[name]
    except KeyError:
        raise Pd4mlError(
            f"no {name!r} view is registered; import pd4ml.adapters (done by 'import pd4ml') "
            f"first; registered: {sorted(_VIEWS) or 'none'}"
        ) from None
    return factory(prepared, **options)
