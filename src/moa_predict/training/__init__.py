"""Training: cross-validate and fit a model into a bundle (``train``), bundles on disk (``bundle``), and the
persisted form of fitted estimators and modules (``persist``: JSON + arrays, never pickle)."""
