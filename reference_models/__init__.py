"""Per-dataset expert reference models (installed as ``pd4ml.reference_models``)."""
