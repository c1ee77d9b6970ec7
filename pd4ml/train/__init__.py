"""One trainer for every model and dataset.

from pd4ml.train import Recipe, TrainingData, fit
result = fit(model, train, val, Recipe(epochs=20), directory="runs/fcn")
"""

from pd4ml.train.checkpoint import CheckpointError
from pd4ml.train.data import TrainingData, TrainingDataError, to_tensors
from pd4ml.train.loop import TrainResult, fit
from pd4ml.train.losses import per_event_loss, weighted_loss
from pd4ml.train.recipe import Recipe, RecipeError, TrainingError

__all__ = [
    "CheckpointError",
    "Recipe",
    "RecipeError",
    "TrainResult",
    "TrainingData",
    "TrainingDataError",
    "TrainingError",
    "fit",
    "per_event_loss",
    "to_tensors",
    "weighted_loss",
]
