"""Framework adapters over prepared splits: PyTorch, PyTorch Geometric, TensorFlow.

Each adapter imports its framework only when used; the core of pd4ml stays NumPy-only. One API
for every dataset and framework::

    Dataset.torch(split, graph=..., **load_data_args)   # -> adapters.torch.TorchEvents
    Dataset.pyg(split, **load_data_args)                # -> adapters.pyg.GraphEvents
    Dataset.tf(split, graph=..., **load_data_args)      # -> adapters.tf.TfEvents

and the same as methods of a :class:`~pd4ml.datasets.base.PreparedData`
(``TopTagging.load_data("train", graph=True).torch()``). Each view has a batching method
(``loader`` / ``dataset``) that reads whole batches from the memory maps in one call.
"""
