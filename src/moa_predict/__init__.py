"""moa-predict: predict compounds' mechanisms of action from L1000 / cell-viability profiles."""

__version__ = "0.1.0"
