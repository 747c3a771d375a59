"""Explanations: attributions, similar reference profiles, compound-level calls, OOD flags."""
