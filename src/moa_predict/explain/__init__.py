"""Explanations: attributions, compound-level calls, the JSON reports (similar references and OOD flags come from
the reference index, ``reference``).

Entry points (every one returns JSON-able dicts/lists, or a DataFrame where said):

- ``explain_upload(bundle, features, ...)``: everything at once (``moa explain``; ``POST /api/explain``);
- ``explain_profiles(bundle, features, ...)``: attributions only (integrated gradients per input column);
- ``global_attributions(model, features, targets, ...)``: per-MoA features over training profiles;
- ``compound_calls(features, proba, target_names)`` (DataFrame) / ``compound_report(bundle, features)``.
"""

from .attributions import AttributionUnavailable, explain_predictions, global_attributions
from .compounds import compound_calls, compound_calls_json
from .report import compound_report, explain_profiles, explain_upload

__all__ = ["AttributionUnavailable", "compound_calls", "compound_calls_json", "compound_report",
           "explain_predictions", "explain_profiles", "explain_upload", "global_attributions"]
