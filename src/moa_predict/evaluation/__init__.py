"""Evaluation: pure functions on arrays — the metric, compound-grouped folds, per-MoA skill (cross-validation,
which fits models, is ``training.crossval``)."""

from .folds import DrugGroupedFolds
from .metrics import columnwise_log_loss, mean_columnwise_log_loss, smoothed_prevalence

__all__ = ["DrugGroupedFolds", "columnwise_log_loss", "mean_columnwise_log_loss", "smoothed_prevalence"]
