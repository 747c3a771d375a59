"""Benchmarks: runners that measure models on a data set, and the renderers of their tables and figures."""
