"""Evaluation: the metric, drug-grouped folds and out-of-fold cross-validation."""

from .crossval import CVResult, assign_folds, cross_validate
from .folds import DrugGroupedFolds
from .metrics import columnwise_log_loss, mean_columnwise_log_loss

__all__ = ["CVResult", "DrugGroupedFolds", "assign_folds", "columnwise_log_loss", "cross_validate",
           "mean_columnwise_log_loss"]
