"""One trainer for every model and dataset."""
