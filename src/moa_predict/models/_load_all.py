"""Imports every model module so that each registers its name."""

from . import prior  # noqa: F401
