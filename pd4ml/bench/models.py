"""The models a benchmark can run, with how each is trained on each dataset under each profile.

One registry serves the bench: the shared FCN and GraphNet (every dataset) are registered
here; per-dataset reference models register themselves from :mod:`pd4ml.reference_models`
(imported on the first lookup) with :func:`register_bench_model`.

Profiles:

* ``quick``: small networks and few epochs, the training split capped at
  :data:`QUICK_MAX_TRAIN_EVENTS` events; minutes per cell on a laptop CPU.
* ``paper``: the original pd4ml paper's setup (arXiv:2107.00656): FCN 12 × 256 and GraphNet
  256 wide with its 3 + 3 + 6 blocks, Adam with the learning rate, batch size, epoch limit,
  early-stopping patience and plateau schedule of the original benchmark, on the full
  datasets.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pd4ml.bench.errors import BenchError
from pd4ml.datasets.registry import get as get_dataset
from pd4ml.errors import UnknownNameError
from pd4ml.models import FCNConfig, ModelConfig
from pd4ml.models.graphnet import GraphNetConfig
from pd4ml.naming import closest_hint
from pd4ml.train import Plateau, Recipe

PROFILES = ("quick", "paper")
#: The training events a ``quick`` cell uses at most (the first ones of the split).
QUICK_MAX_TRAIN_EVENTS = 20_000
#: The test events a ``quick`` cell scores at most (HiggsML's AMS is rescaled to the full set).
QUICK_MAX_TEST_EVENTS = 50_000

#: Per dataset: ``load_data`` parameters of every profile, and whether the prepared split
#: carries the dataset's own graph (False where GraphNet builds its graph from the features).
LOAD_PARAMS: dict[str, dict[str, Any]] = {
    "top_tagging": {"graph": True},
    "smartbkg": {"graph": True},
    "spinodal": {"graph": True},
    "eos": {"graph": True, "form": "nodes"},
    "airshower": {"graph": True},
    "calice_ahcal": {"graph": True},
    "higgsml": {"graph": False},
    "ild_photon_showers": {"graph": False},
}
#: Extra ``load_data`` parameters of the ``quick`` profile (smaller inputs).
QUICK_LOAD_PARAMS: dict[str, dict[str, Any]] = {
    "top_tagging": {"n_constituents": 40, "k": 5},
}


@dataclass(frozen=True)
class Setup:
    """How one model is trained on one dataset under one profile.

    Attributes:
        config: the model's configuration.
        recipe: the training recipe (the cell replaces its ``seed`` and ``threads``).
        load_params: keyword arguments of ``Dataset.load_data`` for every split.
        max_train_events: the training (and validation) events used at most (None: all).
        max_test_events: the test events scored at most (None: all).
    """

    config: ModelConfig
    recipe: Recipe
    load_params: Mapping[str, Any] = field(default_factory=dict)
    max_train_events: int | None = None
    max_test_events: int | None = None


@dataclass(frozen=True)
class BenchModel:
    """A model the bench can run.

    Attributes:
        name: the name used on the command line and in the results tree (``fcn``).
        kind: ``"shared"`` (runs on every dataset) or ``"reference"`` (one dataset's expert).
        architecture: the :mod:`pd4ml.models` architecture name it builds.
        datasets: the datasets it runs on (None: every dataset).
        setup: ``setup(dataset, profile) -> Setup``.
        description: one line for listings.
        citation: BibTeX of the paper the model comes from (empty if none).
    """

    name: str
    kind: Literal["shared", "reference"]
    architecture: str
    datasets: tuple[str, ...] | None
    setup: Callable[[str, str], Setup]
    description: str
    citation: str = ""

    def runs_on(self, dataset: str) -> bool:
        """Whether the model has a setup for ``dataset``."""
        return self.datasets is None or dataset in self.datasets


_REGISTRY: dict[str, BenchModel] = {}
_REFERENCE_LOADED = False


def register_bench_model(model: BenchModel) -> BenchModel:
    """Add ``model`` to the registry (a name clash is an error)."""
    if model.kind not in ("shared", "reference"):
        raise BenchError(f"bench model {model.name!r}: kind must be 'shared' or 'reference'")
    if model.name in _REGISTRY and _REGISTRY[model.name] is not model:
        raise BenchError(f"a bench model named {model.name!r} is registered already")
    if model.name in ("shared", "reference", "all"):
        raise BenchError(f"{model.name!r} names a group of models; choose another name")
    _REGISTRY[model.name] = model
    return model


def _load_reference_models() -> None:
    global _REFERENCE_LOADED
    if not _REFERENCE_LOADED:
        _REFERENCE_LOADED = True
        importlib.import_module("pd4ml.reference_models")


def bench_models() -> dict[str, BenchModel]:
    """Every registered model by name (shared first, then reference models)."""
    _load_reference_models()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].kind != "shared", item[0])))


def bench_model(name: str) -> BenchModel:
    """The registered model ``name``."""
    models = bench_models()
    if name not in models:
        raise UnknownNameError(
            f"unknown model {name!r}{closest_hint(name, list(models))}; models: "
            f"{', '.join(models)} (or the groups 'shared' and 'reference')"
        )
    return models[name]


def select_models(selection: Sequence[str], dataset: str) -> tuple[list[BenchModel], list[str]]:
    """The models of ``selection`` (names, ``"shared"``, ``"reference"``) that run on
    ``dataset``, and a notice for each requested group or model that has none there."""
    chosen: list[BenchModel] = []
    notices: list[str] = []
    models = bench_models()
    for item in selection:
        if item in ("shared", "reference"):
            group = [m for m in models.values() if m.kind == item and m.runs_on(dataset)]
            if not group:
                notices.append(f"{dataset}: no {item} model yet")
            chosen += group
            continue
        model = bench_model(item)
        if model.runs_on(dataset):
            chosen.append(model)
        else:
            notices.append(
                f"{dataset}: model {model.name!r} does not run on it (it runs on "
                f"{', '.join(model.datasets or ())})"
            )
    unique = list({model.name: model for model in chosen}.values())
    return unique, notices


def check_profile(profile: str) -> str:
    """``profile`` validated."""
    if profile not in PROFILES:
        raise UnknownNameError(
            f"unknown profile {profile!r}{closest_hint(profile, list(PROFILES))}; "
            f"profiles: {', '.join(PROFILES)}"
        )
    return profile


def load_params(dataset: str, profile: str) -> dict[str, Any]:
    """The ``load_data`` parameters of ``dataset`` under ``profile`` (every model the same,
    so the models of a dataset share one prepared cache)."""
    params = dict(LOAD_PARAMS.get(dataset, {"graph": False}))
    if profile == "quick":
        params.update(QUICK_LOAD_PARAMS.get(dataset, {}))
    return params


def _limits(profile: str) -> dict[str, int | None]:
    if profile == "quick":
        return {
            "max_train_events": QUICK_MAX_TRAIN_EVENTS,
            "max_test_events": QUICK_MAX_TEST_EVENTS,
        }
    return {"max_train_events": None, "max_test_events": None}


def _setup(dataset: str, profile: str, config: ModelConfig, recipe: Recipe) -> Setup:
    # classes balanced in the loss: HiggsML's signal weights are tiny, and the other
    # classification datasets are balanced already (the weights then change nothing)
    if get_dataset(dataset).manifest().task == "classification":
        recipe = recipe.replace(balance_classes=True)
    return Setup(config, recipe, load_params(dataset, profile), **_limits(profile))


def _fcn_setup(dataset: str, profile: str) -> Setup:
    check_profile(profile)
    if profile == "quick":
        config = FCNConfig(depth=3, width=64)
        # the range test over 1e-6 … 0.1 (suggestions ≤ 0.01): on a few thousand events the
        # loss of the widest sweep's last steps is noise, and its suggestions (up to 1) left
        # networks dead at chance level
        recipe = Recipe(epochs=8, batch_size=64, learning_rate="find", find_range=(1e-6, 0.1))
    else:
        # the original benchmark: Adam 1e-3, batch 256, up to 300 epochs, early stopping with
        # patience 15, learning rate × 0.75 after 8 epochs without improvement (min 1e-5)
        config = FCNConfig()
        recipe = Recipe(
            epochs=300,
            batch_size=256,
            learning_rate=1e-3,
            schedule=Plateau(factor=0.75, patience=8, min_lr=1e-5),
            patience=15,
        )
    return _setup(dataset, profile, config, recipe)


def _graphnet_setup(dataset: str, profile: str) -> Setup:
    check_profile(profile)
    if profile == "quick":
        config: GraphNetConfig = GraphNetConfig(
            width=16, pre_layers=1, graph_layers=2, post_layers=1, max_hits=128
        )
        recipe = Recipe(epochs=8, batch_size=64, learning_rate=1e-2)
    else:
        # the original benchmark: Adam 1e-4, batch 32, up to 400 epochs, patience 50,
        # learning rate × 0.75 after 8 epochs without improvement (min 1e-5)
        config = GraphNetConfig()
        recipe = Recipe(
            epochs=400,
            batch_size=32,
            learning_rate=1e-4,
            schedule=Plateau(factor=0.75, patience=8, min_lr=1e-5),
            patience=50,
        )
    return _setup(dataset, profile, config, recipe)


FCN_MODEL = register_bench_model(
    BenchModel(
        name="fcn",
        kind="shared",
        architecture="fcn",
        datasets=None,
        setup=_fcn_setup,
        description="the shared fully connected network (paper: 12 × 256 ReLU)",
    )
)
GRAPHNET_MODEL = register_bench_model(
    BenchModel(
        name="graphnet",
        kind="shared",
        architecture="graphnet",
        datasets=None,
        setup=_graphnet_setup,
        description="the shared graph network on each dataset's sparse graph",
    )
)


def config_json(config: ModelConfig) -> dict[str, Any]:
    """A model configuration as a JSON-able dict."""
    return dataclasses.asdict(config)
