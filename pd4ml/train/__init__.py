"""One trainer for every model and dataset.

from pd4ml.train import Recipe, TrainingData, fit, predict
result = fit(model, train, val, Recipe(epochs=20), directory="runs/fcn")
scores = predict(result.model, test, output="scores.npy")
"""

from pd4ml.train.checkpoint import CheckpointError
from pd4ml.train.data import TrainingData, TrainingDataError, to_tensors
from pd4ml.train.loop import TrainResult, fit
from pd4ml.train.losses import per_event_loss, weighted_loss
from pd4ml.train.lr_finder import LRFinderError, LRFinderResult, find_learning_rate
from pd4ml.train.predict import PredictError, predict
from pd4ml.train.recipe import Recipe, RecipeError, TrainingError
from pd4ml.train.schedules import (
    Constant,
    CosineRestarts,
    OneCycle,
    Plateau,
    Schedule,
    ScheduleError,
    ScheduleState,
    schedule_from_json,
)

__all__ = [
    "CheckpointError",
    "Constant",
    "CosineRestarts",
    "LRFinderError",
    "LRFinderResult",
    "OneCycle",
    "Plateau",
    "PredictError",
    "Recipe",
    "RecipeError",
    "Schedule",
    "ScheduleError",
    "ScheduleState",
    "TrainResult",
    "TrainingData",
    "TrainingDataError",
    "TrainingError",
    "find_learning_rate",
    "fit",
    "per_event_loss",
    "predict",
    "schedule_from_json",
    "to_tensors",
    "weighted_loss",
]
