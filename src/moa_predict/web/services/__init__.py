"""What the app does, without HTTP: ``model_service.ModelService`` (read, validate and predict through the bundle's
``Predictor``; a stored result's sets, calls and targets), ``registry`` (the served models by name), ``card`` (the
model card) and ``explainer`` (explanations on the pages)."""
