"""The dataset manifests, one TOML file per dataset (installed as ``pd4ml.datasets_manifest``)."""
