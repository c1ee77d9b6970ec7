"""Framework adapters over prepared splits: PyTorch, PyTorch Geometric, TensorFlow.

Each adapter imports its framework only when used; the core of pd4ml stays NumPy-only. One API
for every dataset and framework::

    Dataset.torch(split, graph=..., **load_data_args)   # -> adapters.torch.TorchEvents
    Dataset.pyg(split, **load_data_args)                # -> adapters.pyg.GraphEvents
    Dataset.tf(split, graph=..., **load_data_args)      # -> adapters.tf.TfEvents

and the same as methods of a :class:`~pd4ml.datasets.base.PreparedData`
(``TopTagging.load_data("train", graph=True).torch()``). Each view has a batching method
(``loader`` / ``dataset``) that reads whole batches from the memory maps in one call.

Importing this package registers the three views with the data layer
(:mod:`pd4ml.datasets.views`), which itself imports no adapter.
"""

from __future__ import annotations

from typing import Any

from pd4ml.datasets.views import register_view


def _torch_view(data: Any, **options: Any) -> Any:
    from pd4ml.adapters.torch import TorchEvents

    return TorchEvents(data, **options)


def _pyg_view(data: Any, **options: Any) -> Any:
    from pd4ml.adapters.pyg import GraphEvents

    return GraphEvents(data, **options)


def _tf_view(data: Any, **options: Any) -> Any:
    from pd4ml.adapters.tf import TfEvents

    return TfEvents(data, **options)


register_view("torch", _torch_view)
register_view("pyg", _pyg_view)
register_view("tf", _tf_view)
